//! A streamed HTTP answer of server-sent events, turned into [`Event`]s by a provider's
//! [`Decoder`]. The stream always ends with `Done` or `Error`: a broken connection is an
//! `Unreachable` error, a stream closed before the protocol's end is whatever the decoder
//! says (`Truncated` unless the reply had visibly finished).

use eventsource_stream::Eventsource;
use futures_util::StreamExt;

use crate::{Event, EventStream, ProviderError};

/// One provider's reading of its events.
pub(crate) trait Decoder: Send + 'static {
    /// The events of one SSE message (`event` is its type, empty when unnamed), and whether
    /// the reply is complete with them. `Err` is a protocol violation and ends the stream.
    fn message(&mut self, event: &str, data: &str) -> Result<(Vec<Event>, bool), String>;

    /// The last event when the connection closes before the protocol's end.
    fn closed(&mut self) -> Event {
        Event::Error(ProviderError::Truncated)
    }
}

/// The events of `response`, read by `decoder`.
pub(crate) fn decode(response: reqwest::Response, decoder: impl Decoder) -> EventStream {
    let sse = response.bytes_stream().eventsource();
    let events = futures_util::stream::unfold(
        (sse, decoder, false),
        |(mut sse, mut decoder, ended)| async move {
            if ended {
                return None;
            }
            loop {
                let Some(item) = sse.next().await else {
                    let last = decoder.closed();
                    return Some((vec![last], (sse, decoder, true)));
                };
                let message = match item {
                    Ok(message) => message,
                    Err(err) => {
                        let error = ProviderError::Unreachable {
                            message: format!("the stream broke: {err}"),
                        };
                        return Some((vec![Event::Error(error)], (sse, decoder, true)));
                    }
                };
                match decoder.message(&message.event, &message.data) {
                    Ok((events, false)) if events.is_empty() => continue,
                    Ok((events, end)) => return Some((events, (sse, decoder, end))),
                    Err(message) => {
                        let error = ProviderError::Protocol { message };
                        return Some((vec![Event::Error(error)], (sse, decoder, true)));
                    }
                }
            }
        },
    )
    .flat_map(futures_util::stream::iter);
    Box::pin(events)
}
