//! Group commit: one writer task writes whatever has queued in one
//! transaction and answers each caller, so a burst costs a few commits.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::fault::Faults;
use crate::store::StoreError;

/// A record and where its answer (or the store's error) goes.
type Pending<R, A> = (R, oneshot::Sender<Result<A, String>>);

/// The most records written in one transaction.
const BATCH: usize = 256;

/// The way to a writer task; dropping every clone ends it once idle.
pub(crate) type Writer<R, A> = mpsc::Sender<Pending<R, A>>;

/// Hands `record` to `writer`; resolves once its batch is written.
pub(crate) async fn submit<R, A>(writer: &Writer<R, A>, record: R) -> Result<A, String> {
    let (reply, answer) = oneshot::channel();
    (writer.send((record, reply)).await).map_err(|_| "writer stopped".to_owned())?;
    answer
        .await
        .unwrap_or_else(|_| Err("writer stopped".into()))
}

/// Starts writer `task`: `commit` writes a batch in one transaction, answers in order.
pub(crate) fn start<R, A, F, Fut>(
    faults: &Faults,
    task: &'static str,
    commit: F,
) -> (Writer<R, A>, JoinHandle<()>)
where
    R: Send + 'static,
    A: Send + 'static,
    F: Fn(Vec<R>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Vec<A>, StoreError>> + Send,
{
    let (tx, mut rx) = mpsc::channel::<Pending<R, A>>(4 * BATCH);
    let writer = tokio::spawn(faults.wrap(task, async move {
        let mut batch: Vec<Pending<R, A>> = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            let (records, replies): (Vec<R>, Vec<_>) = batch.drain(..).unzip();
            match commit(records).await {
                Ok(answers) => replies.into_iter().zip(answers).for_each(|(r, a)| {
                    let _ = r.send(Ok(a));
                }),
                Err(e) => replies.into_iter().for_each(|r| {
                    let _ = r.send(Err(e.to_string()));
                }),
            }
        }
    }));
    (tx, writer)
}
