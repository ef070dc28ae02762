//! The frame decoder: arbitrary bytes read as one frame and decoded as the
//! daemon decodes a request.
//!
//! Properties: the outcome is the one the header and the length sent
//! dictate (closed, too large, cut short, malformed, or a request); a
//! request decoded re-encodes into a frame that decodes to the same bytes
//! again; and the decoder never allocates much more than it was sent,
//! whether the frame is whole or cut short.

use supd_proto::Request;
use supd_proto::frame::{FrameError, MAX_FRAME, encode, read_frame};

use super::alloc::peak_during;

/// What decoding a whole frame may allocate beyond a small multiple of its
/// length: serde's first allocations and the error message.
const SLACK: usize = 64 * 1024;
/// How many bytes of decoded request one byte of JSON may become (a
/// 3-byte `"",` is a 24-byte `String`; map entries cost more).
const EXPANSION: usize = 16;

/// Checks one input; panics on a broken property.
pub fn check(data: &[u8]) {
    let (result, peak) = peak_during(|| read_frame::<Request>(&mut &data[..]));
    let Some(header) = data.first_chunk::<4>() else {
        // A header cut short reads as a closed connection.
        assert!(matches!(result, Err(FrameError::Closed)), "{result:?}");
        return;
    };
    let announced = u32::from_be_bytes(*header) as usize;
    if announced > MAX_FRAME {
        assert!(
            matches!(result, Err(FrameError::TooLarge(n)) if n == announced),
            "{result:?}"
        );
        assert!(peak <= SLACK, "{peak} bytes allocated to refuse a frame");
        return;
    }
    let body = &data[4..];
    if body.len() < announced {
        assert!(matches!(result, Err(FrameError::Io(_))), "{result:?}");
        // The body grows as bytes arrive: an announced length costs
        // nothing until sent (read_to_end at most doubles what it holds).
        assert!(
            peak <= 2 * body.len() + SLACK,
            "{peak} bytes allocated for a frame cut short after {} bytes",
            body.len()
        );
        return;
    }
    let body = &body[..announced];
    let bound = (EXPANSION + 1) * announced + SLACK;
    assert!(
        peak <= bound,
        "{peak} bytes allocated for a {announced}-byte frame"
    );
    match result {
        Ok(request) => round_trip(&request),
        Err(FrameError::Malformed(_)) => {
            assert!(serde_json::from_slice::<Request>(body).is_err());
        }
        Err(e) => panic!("a whole frame gave {e:?}"),
    }
}

/// `encode` then `read_frame` gives the request back: the same frame bytes.
fn round_trip(request: &Request) {
    let frame = encode(request).expect("a decoded request encodes");
    let again: Request = read_frame(&mut &frame[..]).expect("an encoded request decodes");
    let frame_again = encode(&again).expect("a decoded request encodes");
    assert_eq!(
        String::from_utf8_lossy(&frame[4..]),
        String::from_utf8_lossy(&frame_again[4..]),
        "the request changed in a round trip"
    );
}
