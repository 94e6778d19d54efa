//! Owns the shutdown signal: a value handed to every task (not a global), which each task
//! awaits at its waiting points.

use tokio::sync::watch;

/// Fires once; every [`Shutdown`] cloned from it sees it.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown has been requested (at once if it already was).
    pub async fn wait(&mut self) {
        // An Err means the trigger is gone, which also means "stop".
        let _ = self.0.wait_for(|v| *v).await;
    }

    /// Sleeps for `d` unless shutdown comes first; true if the full sleep happened.
    pub async fn sleep(&mut self, d: std::time::Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.wait() => false,
        }
    }
}
