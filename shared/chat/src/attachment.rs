//! Images attached to a user's message: recognised by their content (PNG, JPEG, WebP),
//! kept in the blob store under `attachments/<user>/<conversation>/<id>`, referenced from
//! the message, and sent to the model with it.

use jarvis_blobs::{BlobError, BlobKey};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Most images one message may carry.
pub const MAX_PER_MESSAGE: usize = 4;
/// Largest image, in bytes (the request body limit applies first).
pub const MAX_BYTES: usize = 5 * 1024 * 1024;
/// Tokens an image is counted as when fitting a conversation into a window (the providers
/// charge an image a few hundred to about 1,600 tokens, by its size).
pub const IMAGE_TOKENS: u64 = 1_600;

/// An image a message refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Its id.
    pub id: Uuid,
    /// `image/png`, `image/jpeg` or `image/webp`.
    pub media_type: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// The media type of the image `bytes` are, when they are PNG, JPEG or WebP.
pub fn detect(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// Where an attachment of `user`'s `conversation` is kept.
pub fn key(user: &str, conversation: &Uuid, id: &Uuid) -> Result<BlobKey, BlobError> {
    BlobKey::parse(&format!(
        "attachments/{user}/{}/{}",
        conversation.simple(),
        id.simple()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_known_by_their_first_bytes_not_their_names() {
        assert_eq!(detect(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(detect(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0]), Some("image/jpeg"));
        assert_eq!(detect(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(
            detect(b"RIFF\0\0\0\0WAVEfmt "),
            None,
            "sound is not an image"
        );
        assert_eq!(detect(b"GIF89a"), None);
        assert_eq!(detect(b"<svg"), None);
    }
}
