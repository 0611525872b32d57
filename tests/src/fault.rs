//! A TCP link in front of a service that a test can break the ways a pod breaks, without
//! touching the service itself: [`Link::kill`] resets every connection and refuses new ones
//! (a process killed with SIGKILL), [`Link::freeze`] stops passing bytes while the connections
//! stay open (SIGSTOP), [`Link::thaw`] lets them through again (SIGCONT).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Open,
    Frozen,
    Dead,
}

/// See the module documentation.
pub struct Link {
    /// Where to connect instead of the service, `http://127.0.0.1:port`.
    pub address: String,
    mode: watch::Sender<Mode>,
}

impl Link {
    /// A link to the service at `target` (`http://host:port`).
    pub async fn start(target: &str) -> Link {
        let target = target.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0");
        let address = format!("http://{}", listener.local_addr().expect("a bound address"));
        let (mode, watching) = watch::channel(Mode::Open);
        tokio::spawn(accept(listener, target, watching));
        Link { address, mode }
    }

    /// Resets every connection and refuses new ones, for good.
    pub fn kill(&self) {
        self.mode.send_replace(Mode::Dead);
    }

    /// Holds every byte in both directions until [`Link::thaw`].
    pub fn freeze(&self) {
        self.mode.send_replace(Mode::Frozen);
    }

    /// Passes the held bytes on, and everything after them.
    pub fn thaw(&self) {
        self.mode.send_if_modified(|mode| {
            let frozen = *mode == Mode::Frozen;
            if frozen {
                *mode = Mode::Open;
            }
            frozen
        });
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn accept(listener: TcpListener, target: String, mut mode: watch::Receiver<Mode>) {
    loop {
        let client = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(_) => continue,
            },
            changed = mode.changed() => {
                if changed.is_err() || *mode.borrow() == Mode::Dead {
                    return; // The listener closes: connections are refused.
                }
                continue;
            }
        };
        let Ok(service) = TcpStream::connect(&target).await else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = service.set_nodelay(true);
        let (client_read, client_write) = client.into_split();
        let (service_read, service_write) = service.into_split();
        tokio::spawn(pump(client_read, service_write, mode.clone()));
        tokio::spawn(pump(service_read, client_write, mode.clone()));
    }
}

/// Copies one direction of a connection, obeying the link's mode.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        if !open(&mut mode).await {
            return reset(&from, &to);
        }
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            _ = mode.changed() => continue,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read just as the link froze wait for the thaw, as they would in a stopped
        // process's socket buffer.
        if !open(&mut mode).await {
            return reset(&from, &to);
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// Waits while the link is frozen; false once it is dead.
async fn open(mode: &mut watch::Receiver<Mode>) -> bool {
    loop {
        match *mode.borrow_and_update() {
            Mode::Open => return true,
            Mode::Dead => return false,
            Mode::Frozen => {}
        }
        if mode.changed().await.is_err() {
            return false;
        }
    }
}

/// Makes both sockets close with RST, as a killed process's do.
fn reset(from: &OwnedReadHalf, to: &OwnedWriteHalf) {
    let _ = AsRef::<TcpStream>::as_ref(from).set_zero_linger();
    let _ = AsRef::<TcpStream>::as_ref(to).set_zero_linger();
}
