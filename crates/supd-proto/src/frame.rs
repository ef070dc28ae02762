//! Length-prefixed JSON frames with a size cap.
//!
//! The reader checks the announced length against [`MAX_FRAME`] before
//! allocating, so a hostile peer cannot make the daemon reserve memory it did
//! not send. [`read_frame`] decodes from any byte source (a slice, a
//! blocking socket); the daemon reads its frames incrementally against its
//! memory budget (`supd::control::connection`), with [`frame_len`] for the
//! header.

use std::io::{self, Read, Write};

use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The largest frame either side accepts: 16 MiB.
pub const MAX_FRAME: usize = 16 << 20;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection cleanly between frames.
    #[error("connection closed")]
    Closed,
    /// The announced length exceeds [`MAX_FRAME`].
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    /// The payload is not valid JSON for the expected type.
    #[error("malformed frame: {0}")]
    Malformed(#[from] serde_json::Error),
    /// The transport failed, or the peer closed mid-frame.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Encodes `value` as one frame (length prefix included).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let mut buf = vec![0u8; 4];
    serde_json::to_writer(&mut buf, value)?;
    let len = buf.len() - 4;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    buf[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(buf)
}

/// The body length a frame header announces, refused above [`MAX_FRAME`].
pub fn frame_len(header: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// Maps an EOF before the first header byte to [`FrameError::Closed`].
fn header_error(e: io::Error) -> FrameError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        FrameError::Closed
    } else {
        FrameError::Io(e)
    }
}

/// Writes one frame to a blocking writer.
pub fn write_frame<T: Serialize>(w: &mut impl Write, value: &T) -> Result<(), FrameError> {
    w.write_all(&encode(value)?)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame from a blocking reader.
pub fn read_frame<T: DeserializeOwned>(r: &mut impl Read) -> Result<T, FrameError> {
    let mut header = [0u8; 4];
    r.read_exact(&mut header).map_err(header_error)?;
    let len = frame_len(header)?;
    // Grown as bytes arrive: an announced length costs nothing until sent.
    let mut body = Vec::new();
    r.take(len as u64).read_to_end(&mut body)?;
    if body.len() < len {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    Ok(serde_json::from_slice(&body)?)
}

/// Writes one frame to an async writer.
pub async fn write_frame_async<T: Serialize>(
    w: &mut (impl AsyncWrite + Unpin),
    value: &T,
) -> Result<(), FrameError> {
    w.write_all(&encode(value)?).await?;
    w.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes = encode(&serde_json::json!({"a": 1})).unwrap();
        let v: serde_json::Value = read_frame(&mut &bytes[..]).unwrap();
        assert_eq!(v["a"], 1);
    }

    #[test]
    fn oversized_header_is_refused_before_reading() {
        let bytes = (u32::MAX).to_be_bytes();
        let err = read_frame::<serde_json::Value>(&mut &bytes[..]).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge(_)));
    }

    #[test]
    fn clean_eof_is_closed_and_truncation_is_io() {
        let empty: &[u8] = &[];
        assert!(matches!(
            read_frame::<serde_json::Value>(&mut &empty[..]),
            Err(FrameError::Closed)
        ));
        let truncated = [0u8, 0, 0, 10, b'{'];
        assert!(matches!(
            read_frame::<serde_json::Value>(&mut &truncated[..]),
            Err(FrameError::Io(_))
        ));
    }
}
