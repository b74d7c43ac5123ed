//! A shutdown signal shared by a service's background tasks.

use tokio::sync::watch;

/// Cheap to clone; `wait` resolves once `trigger` has been called.
#[derive(Clone, Debug)]
pub struct Shutdown {
    sender: std::sync::Arc<watch::Sender<bool>>,
    receiver: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        let (sender, receiver) = watch::channel(false);
        Self {
            sender: std::sync::Arc::new(sender),
            receiver,
        }
    }

    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.receiver.borrow()
    }

    pub async fn wait(&self) {
        let mut receiver = self.receiver.clone();
        // An error means every sender is gone, which also means "stop".
        let _ = receiver.wait_for(|stop| *stop).await;
    }
}
