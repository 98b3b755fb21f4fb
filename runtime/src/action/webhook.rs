//! The webhook sink: an HTTP/1.1 POST of the event's JSON to a plain `http://` URL,
//! over a std `TcpStream` (a home server on the LAN needs no TLS stack on the device).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::Event;
use crate::{Error, Result};

/// A parsed webhook URL.
#[derive(Debug, Clone)]
pub struct Webhook {
    host: String,
    port: u16,
    path: String,
    timeout: Duration,
}

impl Webhook {
    /// Parses `http://host[:port][/path]`. Other schemes are a configuration error.
    pub fn new(url: &str, timeout_s: f64) -> Result<Self> {
        let bad = |why: &str| Error::Invalid(format!("webhook url '{url}': {why}"));
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// is supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad("bad port"))?),
            None => (authority, 80),
        };
        if host.is_empty() || path.contains(char::is_whitespace) {
            return Err(bad("no host, or whitespace in the path"));
        }
        if !(timeout_s > 0.0 && timeout_s <= 600.0) {
            return Err(bad("timeout_s must be in (0, 600]"));
        }
        Ok(Webhook {
            host: host.to_string(),
            port,
            path: path.to_string(),
            timeout: Duration::from_secs_f64(timeout_s),
        })
    }

    /// POSTs the event; a non-2xx status is an error naming it.
    pub fn post(&self, event: &Event) -> Result<()> {
        let body = event.to_json().to_string();
        let ctx = |what: &str| format!("webhook {}:{}{}: {what}", self.host, self.port, self.path);
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| Error::io(ctx("resolving"), e))?
            .next()
            .ok_or_else(|| Error::Invalid(ctx("no address")))?;
        let mut s = TcpStream::connect_timeout(&addr, self.timeout)
            .map_err(|e| Error::io(ctx("connecting"), e))?;
        s.set_read_timeout(Some(self.timeout))
            .and_then(|_| s.set_write_timeout(Some(self.timeout)))
            .map_err(|e| Error::io(ctx("socket"), e))?;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: hearth\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.path,
            self.host,
            self.port,
            body.len()
        );
        s.write_all(head.as_bytes())
            .and_then(|_| s.write_all(body.as_bytes()))
            .and_then(|_| s.flush())
            .map_err(|e| Error::io(ctx("sending"), e))?;
        // The status line is enough; read at most a little of the reply.
        let mut reply = Vec::new();
        s.take(4096)
            .read_to_end(&mut reply)
            .map_err(|e| Error::io(ctx("reading the reply"), e))?;
        let line = String::from_utf8_lossy(&reply);
        let status = line
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| Error::Format(ctx("no HTTP status in the reply")))?;
        if !(200..300).contains(&status) {
            return Err(Error::Invalid(ctx(&format!("HTTP status {status}"))));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let w = Webhook::new("http://127.0.0.1:8123/api/hook", 1.0).unwrap();
        assert_eq!(
            (w.host.as_str(), w.port, w.path.as_str()),
            ("127.0.0.1", 8123, "/api/hook")
        );
        let w = Webhook::new("http://example", 1.0).unwrap();
        assert_eq!((w.port, w.path.as_str()), (80, "/"));
        assert!(Webhook::new("https://x/", 1.0).is_err());
        assert!(Webhook::new("http://x:99999/", 1.0).is_err());
        assert!(Webhook::new("http://:80/", 1.0).is_err());
    }
}
