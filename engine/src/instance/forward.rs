//! A port forward from the controller's loopback into a machine (an Instance's `expose`).

use super::*;

/// A TCP port forward from `127.0.0.1:listen` to `target`; stops when dropped.
pub struct Forward {
    pub listen: u16,
    pub target: String,
    task: tokio::task::JoinHandle<()>,
}

impl Forward {
    pub async fn start(listen: u16, target: String) -> Result<Forward> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", listen))
            .await
            .map_err(|e| io(&format!("listening on 127.0.0.1:{listen}"), e))?;
        let to = target.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    // Out of descriptors, say: retrying at once would spin a core.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let to = to.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(Forward {
            listen,
            target,
            task,
        })
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_forward_carries_bytes_both_ways_and_stops_when_dropped() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = echo.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let f = Forward::start(port, target).await.unwrap();
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut back = [0u8; 5];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello");
        drop(f);
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
        );
    }
}
