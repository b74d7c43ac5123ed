//! A TCP proxy between a service and PostgreSQL or RabbitMQ that a test can
//! cut (every open connection is closed, new ones are refused) and restore.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct TcpProxy {
    address: SocketAddr,
    cut: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a random local port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let accept_task = tokio::spawn(accept_loop(
            listener,
            target,
            cut.clone(),
            generation.subscribe(),
        ));
        Ok(Self {
            address,
            cut,
            generation,
            accept_task,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// `url` (of the local PostgreSQL or RabbitMQ this proxy forwards to)
    /// made to go through the proxy.
    pub fn route(&self, url: &str, target: &str) -> String {
        url.replace(target, &format!("127.0.0.1:{}", self.port()))
    }

    /// Closes every proxied connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.generation.send_modify(|g| *g += 1);
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    cut: Arc<AtomicBool>,
    generation: watch::Receiver<u64>,
) {
    while let Ok((inbound, _)) = listener.accept().await {
        if cut.load(Ordering::SeqCst) {
            drop(inbound);
            continue;
        }
        let mut generation = generation.clone();
        generation.mark_unchanged();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(target).await else {
                return;
            };
            let mut inbound = inbound;
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = generation.changed() => {}
            }
        });
    }
}
