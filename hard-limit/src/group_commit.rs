//! Group commit for what background work records: workers hand their record
//! and a reply channel to one task, which writes whatever has queued in one
//! transaction. A burst of shutdowns or warnings costs a few commits, not one
//! each (the webhook's `Ingest` does the same for deliveries).

use std::future::Future;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::fault::Faults;
use crate::store::StoreError;

/// A record on its way to the store, and where its answer goes: whether the
/// store applied it, or the store's error as text.
pub(crate) type Pending<R> = (R, oneshot::Sender<Result<bool, String>>);

/// The most records written in one transaction.
const BATCH: usize = 256;

/// Starts the writer task `task` (named for fault injection). `commit`
/// writes one batch and answers, per record, whether it was applied.
pub(crate) fn start<R, F, Fut>(
    faults: &Faults,
    task: &'static str,
    commit: F,
) -> (mpsc::Sender<Pending<R>>, JoinHandle<()>)
where
    R: Send + 'static,
    F: Fn(Vec<R>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Vec<bool>, StoreError>> + Send,
{
    let (tx, mut rx) = mpsc::channel::<Pending<R>>(1024);
    let writer = tokio::spawn(faults.wrap(task, async move {
        let mut batch: Vec<Pending<R>> = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            let (records, replies): (Vec<R>, Vec<_>) = batch.drain(..).unzip();
            match commit(records).await {
                Ok(applied) => {
                    for (reply, ok) in replies.into_iter().zip(applied) {
                        let _ = reply.send(Ok(ok));
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
