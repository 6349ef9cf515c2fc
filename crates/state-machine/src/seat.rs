//! A step's worker seat, given up when the step must wait. The driver runs each step holding one of its
//! `workers` permits (`DriverConfig::workers`); a step that waits for an API token (`budget`) is not
//! working, and in an AZ storm thousands of steps wait minutes for `CreateSnapshot` tokens. Holding their
//! seats meanwhile would starve the steps that could call other actions now (a restore, an attach, a
//! completion). So the driver runs every step inside `Seat::scope`, and a wait wrapped in `while_waiting`
//! gives the seat back for the rest of the step: once its token comes, the call goes at once, as the
//! budget timed it. Taking a seat again first would let the calls that waited for one arrive at AWS in a
//! clump, faster than the bucket they were spaced for. What is left of such a step is its calls, and those
//! the budget bounds.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

tokio::task_local! {
    static SEAT: Arc<Seat>;
}

/// One worker permit of a pool, held by the step that runs in its scope.
#[derive(Debug)]
pub struct Seat {
    permit: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Seat {
    /// Waits for a seat of `pool` (fair: in order of asking). `None` if the pool is closed.
    pub async fn take(pool: Arc<Semaphore>) -> Option<Arc<Self>> {
        let permit = pool.acquire_owned().await.ok()?;
        Some(Arc::new(Self {
            permit: Mutex::new(Some(permit)),
        }))
    }

    /// Runs `f` holding this seat; waits inside it can give the seat up (`while_waiting`).
    pub async fn scope<F: Future>(self: Arc<Self>, f: F) -> F::Output {
        SEAT.scope(self, f).await
    }

    fn release(&self) {
        drop(self.slot().take());
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<OwnedSemaphorePermit>> {
        self.permit.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the seat's permit is held now.
    pub fn held(&self) -> bool {
        self.slot().is_some()
    }
}

/// Gives up the current step's seat, if it has one and still holds it, for the rest of the step, then runs
/// `wait`. Outside a step (a loader's own task, the listener) it just runs `wait`.
pub async fn while_waiting<F: Future>(wait: F) -> F::Output {
    if let Ok(seat) = SEAT.try_with(Arc::clone) {
        seat.release();
    }
    wait.await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_waiting_step_gives_up_its_seat_for_the_rest_of_the_step() {
        let pool = Arc::new(Semaphore::new(1));
        let Some(seat) = Seat::take(pool.clone()).await else {
            panic!("a seat")
        };
        let inner = seat.clone();
        let waiter = tokio::spawn(seat.scope(async move {
            while_waiting(tokio::time::sleep(Duration::from_secs(10))).await;
            inner.held()
        }));
        tokio::time::sleep(Duration::from_secs(1)).await;
        // While the step waits, another can work.
        let other = pool.clone().try_acquire_owned();
        assert!(other.is_ok(), "the seat was lent");
        drop(other);
        assert_eq!(
            waiter.await.ok(),
            Some(false),
            "the call goes when its token comes"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn outside_a_step_a_wait_just_runs() {
        assert_eq!(while_waiting(async { 7 }).await, 7);
    }
}
