//! The MQTT sink: MQTT 3.1.1 CONNECT and QoS 1 PUBLISH over a std `TcpStream`, the
//! handful of packets an event needs (no async runtime on the device).
//!
//! Topics: `<prefix>/<domain>/<object_id>/<Intent>` when the event targets one entity
//! (Home Assistant's `domain.object_id`, split the way HA's MQTT topics nest), else
//! `<prefix>/intent/<Intent>`. The payload is the event's JSON.
//!
//! Delivery: each event waits for the broker's PUBACK. When the broker is down the
//! event stays in a bounded queue (oldest dropped, with a warning, past
//! [`QUEUE_LIMIT`]) and is sent first on the next publish; each publish tries to
//! (re)connect [`ATTEMPTS`] times with doubling back-off.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::Event;
use crate::{Error, Result};

/// Events kept while the broker is unreachable.
pub const QUEUE_LIMIT: usize = 64;
/// Connection attempts per publish.
pub const ATTEMPTS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const IO_TIMEOUT: Duration = Duration::from_secs(3);
const KEEP_ALIVE_S: u16 = 60;

/// Where and as whom to publish.
#[derive(Debug, Clone)]
pub struct MqttOptions {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// First topic level.
    pub topic_prefix: String,
    /// Client id.
    pub client_id: String,
}

/// A publisher with its pending queue.
pub struct MqttSink {
    opts: MqttOptions,
    conn: Option<TcpStream>,
    pending: VecDeque<(String, Vec<u8>)>,
    next_id: u16,
}

impl MqttSink {
    /// Checks the options; connects on first publish.
    pub fn new(opts: MqttOptions) -> Result<Self> {
        if opts.host.is_empty() || opts.client_id.is_empty() || opts.client_id.len() > 23 {
            return Err(Error::Invalid(
                "mqtt action: needs a host and a client_id of 1..=23 bytes".into(),
            ));
        }
        if opts.topic_prefix.contains(['+', '#']) {
            return Err(Error::Invalid(
                "mqtt action: topic_prefix may not contain + or #".into(),
            ));
        }
        Ok(MqttSink {
            opts,
            conn: None,
            pending: VecDeque::new(),
            next_id: 1,
        })
    }

    /// The topic an event goes to.
    pub fn topic(&self, event: &Event) -> String {
        let p = &self.opts.topic_prefix;
        match event.entity_id.as_deref().and_then(|id| id.split_once('.')) {
            Some((domain, object)) => format!("{p}/{domain}/{object}/{}", event.intent),
            None => format!("{p}/intent/{}", event.intent),
        }
    }

    /// Queues the event and sends everything pending. Errors when the broker could not
    /// be reached; the events stay queued for the next call.
    pub fn publish(&mut self, event: &Event) -> Result<()> {
        if self.pending.len() == QUEUE_LIMIT {
            if let Some((topic, _)) = self.pending.pop_front() {
                tracing::warn!("mqtt: queue full, dropping the oldest event (topic {topic})");
            }
        }
        self.pending
            .push_back((self.topic(event), event.to_json().to_string().into_bytes()));
        let mut backoff = FIRST_BACKOFF;
        let mut last_err = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(backoff);
                backoff *= 2;
            }
            match self.flush() {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::debug!("mqtt: attempt {}: {e}", attempt + 1);
                    self.conn = None;
                    last_err = Some(e);
                }
            }
        }
        let e = last_err.map_or_else(String::new, |e| e.to_string());
        Err(Error::Invalid(format!(
            "mqtt {}:{}: {e} ({} event(s) queued)",
            self.opts.host,
            self.opts.port,
            self.pending.len()
        )))
    }

    /// Sends the pending events in order, each removed once acknowledged.
    fn flush(&mut self) -> Result<()> {
        while let Some((topic, payload)) = self.pending.front() {
            let id = self.next_id;
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            let packet = publish_packet(topic, payload, id)?;
            let conn = self.connection()?;
            conn.write_all(&packet)
                .map_err(|e| Error::io("mqtt: sending PUBLISH", e))?;
            let (kind, body) = read_packet(conn)?;
            if kind != 0x40 || body != id.to_be_bytes() {
                return Err(Error::Format(format!(
                    "mqtt: expected PUBACK for {id}, got packet type {:#x}",
                    kind
                )));
            }
            self.pending.pop_front();
        }
        Ok(())
    }

    fn connection(&mut self) -> Result<&mut TcpStream> {
        if self.conn.is_none() {
            self.conn = Some(connect(&self.opts)?);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| Error::Invalid("mqtt: not connected".into()))
    }
}

impl Drop for MqttSink {
    fn drop(&mut self) {
        if let Some(c) = &mut self.conn {
            // DISCONNECT: a clean goodbye; failure does not matter any more.
            let _ = c.write_all(&[0xE0, 0x00]);
        }
        if !self.pending.is_empty() {
            tracing::warn!(
                "mqtt: {} event(s) never reached the broker",
                self.pending.len()
            );
        }
    }
}

fn connect(o: &MqttOptions) -> Result<TcpStream> {
    let addr = (o.host.as_str(), o.port)
        .to_socket_addrs()
        .map_err(|e| Error::io(format!("mqtt: resolving {}", o.host), e))?
        .next()
        .ok_or_else(|| Error::Invalid(format!("mqtt: no address for {}", o.host)))?;
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .map_err(|e| Error::io(format!("mqtt: connecting to {addr}"), e))?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|_| s.set_write_timeout(Some(IO_TIMEOUT)))
        .and_then(|_| s.set_nodelay(true))
        .map_err(|e| Error::io("mqtt: socket", e))?;
    let mut var = Vec::new();
    put_str(&mut var, "MQTT")?;
    var.push(4); // protocol level 3.1.1
    var.push(0x02); // clean session
    var.extend_from_slice(&KEEP_ALIVE_S.to_be_bytes());
    put_str(&mut var, &o.client_id)?;
    let mut packet = vec![0x10];
    put_len(&mut packet, var.len())?;
    packet.extend_from_slice(&var);
    s.write_all(&packet)
        .map_err(|e| Error::io("mqtt: sending CONNECT", e))?;
    let (kind, body) = read_packet(&mut s)?;
    match (kind, body.as_slice()) {
        (0x20, [_, 0]) => Ok(s),
        (0x20, [_, code]) => Err(Error::Invalid(format!(
            "mqtt: the broker refused the connection (return code {code})"
        ))),
        _ => Err(Error::Format(format!(
            "mqtt: expected CONNACK, got packet type {kind:#x}"
        ))),
    }
}

/// PUBLISH, QoS 1.
fn publish_packet(topic: &str, payload: &[u8], id: u16) -> Result<Vec<u8>> {
    let mut var = Vec::with_capacity(topic.len() + payload.len() + 4);
    put_str(&mut var, topic)?;
    var.extend_from_slice(&id.to_be_bytes());
    var.extend_from_slice(payload);
    let mut packet = vec![0x32];
    put_len(&mut packet, var.len())?;
    packet.extend_from_slice(&var);
    Ok(packet)
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<()> {
    let n = u16::try_from(s.len())
        .map_err(|_| Error::Invalid("mqtt: string longer than 65535 bytes".into()))?;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// MQTT's variable-length "remaining length" (at most 4 bytes, < 256 MiB).
fn put_len(out: &mut Vec<u8>, mut n: usize) -> Result<()> {
    if n >= 268_435_456 {
        return Err(Error::Invalid("mqtt: packet too large".into()));
    }
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return Ok(());
        }
    }
}

/// Reads one packet: (type nibble << 4, body). Bodies over 64 KiB are refused (the
/// broker only sends acknowledgements here).
fn read_packet(s: &mut TcpStream) -> Result<(u8, Vec<u8>)> {
    let io = |e| Error::io("mqtt: reading from the broker", e);
    let mut b = [0u8; 1];
    s.read_exact(&mut b).map_err(io)?;
    let kind = b[0] & 0xF0;
    let (mut len, mut shift) = (0usize, 0);
    loop {
        s.read_exact(&mut b).map_err(io)?;
        len |= usize::from(b[0] & 0x7F) << shift;
        if b[0] & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            return Err(Error::Format("mqtt: bad remaining length".into()));
        }
    }
    if len > 65_536 {
        return Err(Error::Format(format!("mqtt: {len}-byte reply refused")));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).map_err(io)?;
    Ok((kind, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_length_encoding() {
        for (n, want) in [
            (0usize, vec![0u8]),
            (127, vec![0x7F]),
            (128, vec![0x80, 0x01]),
            (16_383, vec![0xFF, 0x7F]),
            (2_097_152, vec![0x80, 0x80, 0x80, 0x01]),
        ] {
            let mut v = Vec::new();
            put_len(&mut v, n).unwrap();
            assert_eq!(v, want, "{n}");
        }
        assert!(put_len(&mut Vec::new(), 300_000_000).is_err());
    }

    #[test]
    fn broker_down_keeps_events_queued() {
        // A port nothing listens on: bind, note it, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut sink = MqttSink::new(MqttOptions {
            host: "127.0.0.1".into(),
            port,
            topic_prefix: "hearth".into(),
            client_id: "t".into(),
        })
        .unwrap();
        let e = Event {
            text: "t".into(),
            intent: "HassTurnOn".into(),
            slots: Default::default(),
            stage: "template",
            entity_id: Some("light.desk_lamp".into()),
            domain: Some("light".into()),
            response: None,
        };
        assert_eq!(sink.topic(&e), "hearth/light/desk_lamp/HassTurnOn");
        let err = sink.publish(&e).unwrap_err().to_string();
        assert!(err.contains("1 event(s) queued"), "{err}");
        assert_eq!(sink.pending.len(), 1);
        sink.pending.clear();
    }
}
