//! One task that serves queued requests in batches, each caller waiting for its own answer:
//! the shape shared by the SQLite group commit of MarkPaid ([`super::paid_writer`]) and the
//! batched reads of orders ([`super::order_reader`]).

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

/// Requests waiting for the task; a caller beyond this waits to be queued.
const QUEUE: usize = 1024;

/// One queued request and where its answer goes.
pub(crate) struct Job<T, A> {
    pub(crate) request: T,
    pub(crate) answer: oneshot::Sender<A>,
}

impl<T, A> Job<T, A> {
    /// Answers the caller. It may have gone (its request was cancelled); whatever the batch
    /// did stands either way.
    pub(crate) fn answer(self, answer: A) {
        let _ = self.answer.send(answer);
    }
}

/// The handle callers submit through; the task stops when the last handle is dropped.
pub(crate) struct Batcher<T, A> {
    jobs: mpsc::Sender<Job<T, A>>,
    /// Logged when a caller finds the task gone, saying what the caller does instead.
    stopped: &'static str,
}

impl<T, A> Clone for Batcher<T, A> {
    fn clone(&self) -> Self {
        Batcher {
            jobs: self.jobs.clone(),
            stopped: self.stopped,
        }
    }
}

impl<T, A> std::fmt::Debug for Batcher<T, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl<T: Send + 'static, A: Send + 'static> Batcher<T, A> {
    /// Starts the task: it takes whatever is queued, up to `max` requests, and hands them to
    /// `serve`, which must answer every job of the batch.
    pub(crate) fn start<F, Fut>(max: usize, stopped: &'static str, mut serve: F) -> Self
    where
        F: FnMut(Vec<Job<T, A>>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let (jobs, mut queue) = mpsc::channel(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(max);
            while queue.recv_many(&mut batch, max).await > 0 {
                serve(std::mem::replace(&mut batch, Vec::with_capacity(max))).await;
            }
        });
        Batcher { jobs, stopped }
    }

    /// Queues `request` and waits for its answer. `None`: the task has stopped (it panicked),
    /// and the caller must do the work on its own.
    pub(crate) async fn submit(&self, request: T) -> Option<A> {
        let (answer, answered) = oneshot::channel();
        let answer = match self.jobs.send(Job { request, answer }).await {
            Ok(()) => answered.await.ok(),
            Err(_) => None,
        };
        if answer.is_none() {
            tracing::error!("{}", self.stopped);
        }
        answer
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Every caller gets the answer to its own request, in whatever batches they land.
    #[tokio::test]
    async fn each_caller_gets_its_own_answer() {
        let batcher = Batcher::start(8, "stopped", |batch: Vec<Job<u32, u32>>| async move {
            for job in batch {
                let doubled = job.request * 2;
                job.answer(doubled);
            }
        });
        let calls = (0..100).map(|n| {
            let batcher = batcher.clone();
            tokio::spawn(async move { (n, batcher.submit(n).await) })
        });
        for call in futures::future::join_all(calls).await {
            let (n, answer) = call.unwrap();
            assert_eq!(answer, Some(n * 2));
        }
    }

    /// A task that died (here: `serve` panics) leaves callers an answer of `None`, never a
    /// hang, so they can fall back to doing the work themselves.
    #[tokio::test]
    async fn a_stopped_task_answers_none() {
        let batcher = Batcher::start(8, "stopped", |_batch: Vec<Job<u32, u32>>| async move {
            panic!("the batch task fails");
        });
        assert_eq!(batcher.submit(1).await, None);
        assert_eq!(batcher.submit(2).await, None);
    }
}
