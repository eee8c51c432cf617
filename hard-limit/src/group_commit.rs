//! Group commit: callers hand a record to one writer task, which writes
//! whatever has queued in one transaction and answers each caller. A burst
//! of deliveries, shutdowns or warnings costs a few commits, not one each.
//! The webhook's [`Ingest`](crate::webhook::Ingest) and every
//! [`runner`](crate::runner) job record through it.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::fault::Faults;
use crate::store::StoreError;

/// A record on its way to the store, and where its answer goes: what the
/// store made of it, or the store's error as text.
type Pending<R, A> = (R, oneshot::Sender<Result<A, String>>);

/// The most records written in one transaction.
const BATCH: usize = 256;

/// The way to a writer task. Dropping every clone ends the task once it
/// has written what is queued.
pub(crate) type Writer<R, A> = mpsc::Sender<Pending<R, A>>;

/// Hands `record` to `writer`; resolves once its batch is written.
pub(crate) async fn submit<R, A>(writer: &Writer<R, A>, record: R) -> Result<A, String> {
    let (reply, answer) = oneshot::channel();
    (writer.send((record, reply)).await).map_err(|_| "writer stopped".to_owned())?;
    answer
        .await
        .unwrap_or_else(|_| Err("writer stopped".into()))
}

/// Starts the writer task `task` (named for fault injection). `commit`
/// writes one batch in one transaction and answers once per record, in
/// order.
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
                Ok(answers) => {
                    for (reply, a) in replies.into_iter().zip(answers) {
                        let _ = reply.send(Ok(a));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
            }
        }
    }));
    (tx, writer)
}
