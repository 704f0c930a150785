//! Receiving request bodies before a request counts as in flight, with limits on slow senders.
//!
//! A request holds one of the `--max-concurrent-requests` permits only once its whole body has
//! arrived; otherwise a client that sends headers and then trickles the body could hold every
//! permit and shut everyone else out. Instead, receiving is bounded on its own:
//! - **size**: more than `--max-body-bytes` is refused with 413 (a declared `Content-Length`
//!   over the limit is left to the handler, which answers 413 without reading anything);
//! - **time**: the whole body within `--body-read-timeout`, and at a minimum rate
//!   (`--min-body-rate` bytes per second after a short start allowance), else 408;
//! - **slow bodies per client address**: a body still arriving after [`FAST_BODY_WINDOW`] takes
//!   one of `--max-slow-bodies-per-client` slots of its client's IP address, and is refused with
//!   429 when they are all taken. Bodies that arrive at once (almost every real request: they
//!   are sent with the headers) never need a slot, so slow senders cannot starve fast clients,
//!   even those behind the same address.
//!
//! Failures close the connection (`Connection: close`): the rest of the body is never read.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request};
use axum::http::{StatusCode, header};
use tokio::time::Instant;

use crate::status::{ApiError, Code, Refusal};

/// A body complete within this time never counts as slow.
pub const FAST_BODY_WINDOW: Duration = Duration::from_millis(100);

/// The time a body may take before the minimum rate applies (connection start-up, a client's
/// first write).
pub const RATE_ALLOWANCE: Duration = Duration::from_secs(2);

/// Default for `--body-read-timeout`.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(20);

/// Default for `--min-body-rate`, in bytes per second: 128 kbit/s, a poor mobile link.
pub const DEFAULT_MIN_BODY_RATE: u64 = 16 * 1024;

/// Default for `--max-slow-bodies-per-client`.
pub const DEFAULT_MAX_SLOW_BODIES_PER_CLIENT: usize = 32;

/// The limits a body is received under.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub timeout: Duration,
    /// Bytes per second after [`RATE_ALLOWANCE`]; 0 turns the rate check off.
    pub min_rate: u64,
    pub max_slow_per_client: usize,
}

/// Counts the slow bodies being received per client IP address.
#[derive(Default)]
pub struct SlowBodies {
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// One slow body's slot; released when dropped.
struct SlowBodySlot<'a> {
    owner: &'a SlowBodies,
    client: IpAddr,
}

impl SlowBodies {
    fn try_take(&self, client: IpAddr, limit: usize) -> Option<SlowBodySlot<'_>> {
        let mut counts = self.per_client.lock().ok()?;
        let count = counts.entry(client).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(SlowBodySlot {
            owner: self,
            client,
        })
    }

    /// Slow bodies being received from `client` now.
    #[cfg(test)]
    pub fn count(&self, client: IpAddr) -> usize {
        self.per_client
            .lock()
            .map(|c| c.get(&client).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

impl Drop for SlowBodySlot<'_> {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.owner.per_client.lock()
            && let Some(count) = counts.get_mut(&self.client)
        {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

/// The client's IP address, as the connection loop recorded it (unspecified when the router
/// runs without it, as in unit tests).
pub fn client_ip(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Receives the whole body of `request` under `limits` and hands the request back with the body
/// in memory. Requests without a body, and those whose declared length is already over the
/// limit (the handler refuses them without reading), are handed back unchanged.
pub async fn receive(
    request: Request,
    limits: &BodyLimits,
    slow_bodies: &SlowBodies,
) -> Result<Request, Refusal> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if request.body().is_end_stream() || declared.is_some_and(|n| n > limits.max_bytes as u64) {
        return Ok(request);
    }
    let client = client_ip(&request);
    let started = Instant::now();
    let (parts, mut body) = request.into_parts();
    let mut received: Vec<u8> =
        Vec::with_capacity(declared.map_or(0, |n| n as usize).min(limits.max_bytes));
    let mut slot = None;
    loop {
        let now = Instant::now();
        let mut deadline = started + limits.timeout;
        let mut why = Waited::Total;
        if limits.min_rate > 0 {
            let earned = Duration::from_secs_f64(received.len() as f64 / limits.min_rate as f64);
            let by_rate = started + RATE_ALLOWANCE + earned;
            if by_rate < deadline {
                deadline = by_rate;
                why = Waited::Rate;
            }
        }
        if slot.is_none() {
            let fast_until = started + FAST_BODY_WINDOW;
            if now >= fast_until {
                slot = Some(
                    slow_bodies
                        .try_take(client, limits.max_slow_per_client)
                        .ok_or_else(|| too_many_slow(client, limits))?,
                );
                continue;
            }
            if fast_until < deadline {
                deadline = fast_until;
                why = Waited::FastWindow;
            }
        }
        let frame = tokio::time::timeout_at(
            deadline,
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)),
        )
        .await;
        match frame {
            Err(_elapsed) => match why {
                Waited::FastWindow => continue,
                Waited::Rate => return Err(too_slow(&received, started, limits)),
                Waited::Total => return Err(timed_out(&received, limits)),
            },
            Ok(None) => break,
            Ok(Some(Err(error))) => {
                return Err(Refusal {
                    status: StatusCode::BAD_REQUEST,
                    error: ApiError::invalid(format!("cannot read the request body: {error}")),
                });
            }
            Ok(Some(Ok(frame))) => {
                // Trailers carry nothing the API uses.
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if received.len() + data.len() > limits.max_bytes {
                    return Err(Refusal {
                        status: StatusCode::PAYLOAD_TOO_LARGE,
                        error: payload_too_large(limits.max_bytes),
                    });
                }
                received.extend_from_slice(&data);
            }
        }
    }
    drop(slot);
    Ok(Request::from_parts(
        parts,
        Body::from(Bytes::from(received)),
    ))
}

/// What the wait for the next piece of body was bounded by.
#[derive(Clone, Copy)]
enum Waited {
    FastWindow,
    Rate,
    Total,
}

/// The error of a body over `--max-body-bytes` (413), as both APIs word it.
pub fn payload_too_large(limit: usize) -> ApiError {
    ApiError::new(
        Code::ResourceExhausted,
        format!("Request payload size exceeds the limit: {limit} bytes."),
    )
}

fn too_many_slow(client: IpAddr, limits: &BodyLimits) -> Refusal {
    Refusal {
        status: StatusCode::TOO_MANY_REQUESTS,
        error: ApiError::new(
            Code::ResourceExhausted,
            format!(
                "Too many slow request bodies from {client} at once (--max-slow-bodies-per-client \
                 {}); send the body with the request",
                limits.max_slow_per_client
            ),
        ),
    }
}

fn too_slow(received: &[u8], started: Instant, limits: &BodyLimits) -> Refusal {
    Refusal {
        status: StatusCode::REQUEST_TIMEOUT,
        error: ApiError::new(
            Code::DeadlineExceeded,
            format!(
                "The request body arrived too slowly: {} bytes in {} ms, below the minimum of {} \
                 bytes per second (--min-body-rate)",
                received.len(),
                started.elapsed().as_millis(),
                limits.min_rate
            ),
        ),
    }
}

fn timed_out(received: &[u8], limits: &BodyLimits) -> Refusal {
    Refusal {
        status: StatusCode::REQUEST_TIMEOUT,
        error: ApiError::new(
            Code::DeadlineExceeded,
            format!(
                "The request body did not arrive within {} ms (--body-read-timeout); {} bytes came",
                limits.timeout.as_millis(),
                received.len()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_client_and_released() {
        let slow = SlowBodies::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = slow.try_take(a, 2).unwrap();
        let _second = slow.try_take(a, 2).unwrap();
        assert!(
            slow.try_take(a, 2).is_none(),
            "a third slot for the same client"
        );
        let _other = slow
            .try_take(b, 2)
            .expect("another client has its own slots");
        drop(first);
        assert_eq!(slow.count(a), 1);
        assert!(slow.try_take(a, 2).is_some());
    }
}
