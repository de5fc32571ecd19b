//! Image rules: the type is read from the bytes (never from the file name or the client's
//! `Content-Type`), the size and the dimensions are bounded.
//!
//! Dimensions come from the image header. The image is not decoded here: it is served to browsers
//! as stored, under its sniffed type, with `nosniff`, so a file that lies about its header only
//! breaks its own picture.

/// The image types the shop stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Jpeg,
    Png,
    Webp,
}

impl ImageKind {
    /// From the magic bytes at the start of the file.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(ImageKind::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(ImageKind::Png)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(ImageKind::Webp)
        } else {
            None
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ImageKind::Jpeg => "image/jpeg",
            ImageKind::Png => "image/png",
            ImageKind::Webp => "image/webp",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ImageKind::Jpeg => "jpg",
            ImageKind::Png => "png",
            ImageKind::Webp => "webp",
        }
    }
}

/// Limits an upload must meet.
#[derive(Debug, Clone, Copy)]
pub struct ImageRules {
    pub max_bytes: usize,
    pub min_side: u32,
    pub max_side: u32,
}

impl Default for ImageRules {
    fn default() -> Self {
        ImageRules {
            max_bytes: 5 * 1024 * 1024,
            min_side: 32,
            max_side: 8000,
        }
    }
}

/// An upload that passed every rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inspected {
    pub kind: ImageKind,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("the file is empty")]
    Empty,
    #[error("the image is larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("the file is not a JPEG, PNG or WebP image")]
    UnsupportedType,
    #[error("the image header is damaged: its dimensions cannot be read")]
    Unreadable,
    #[error("the image is {width}×{height}; each side must be between {min} and {max} pixels")]
    BadDimensions {
        width: u32,
        height: u32,
        min: u32,
        max: u32,
    },
}

impl ImageRules {
    pub fn inspect(&self, bytes: &[u8]) -> Result<Inspected, ImageError> {
        if bytes.is_empty() {
            return Err(ImageError::Empty);
        }
        if bytes.len() > self.max_bytes {
            return Err(ImageError::TooLarge {
                max: self.max_bytes,
            });
        }
        let kind = ImageKind::sniff(bytes).ok_or(ImageError::UnsupportedType)?;
        let size = imagesize::blob_size(bytes).map_err(|_| ImageError::Unreadable)?;
        let (width, height) = (
            u32::try_from(size.width).unwrap_or(u32::MAX),
            u32::try_from(size.height).unwrap_or(u32::MAX),
        );
        let ok = |side: u32| (self.min_side..=self.max_side).contains(&side);
        if !ok(width) || !ok(height) {
            return Err(ImageError::BadDimensions {
                width,
                height,
                min: self.min_side,
                max: self.max_side,
            });
        }
        Ok(Inspected {
            kind,
            width,
            height,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first bytes of a PNG up to its IHDR: enough for the header checks.
    fn png_header(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        bytes.extend_from_slice(&width.to_be_bytes());
        bytes.extend_from_slice(&height.to_be_bytes());
        bytes.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
        bytes
    }

    #[test]
    fn types_come_from_the_bytes() {
        assert_eq!(ImageKind::sniff(&png_header(1, 1)), Some(ImageKind::Png));
        assert_eq!(
            ImageKind::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some(ImageKind::Jpeg)
        );
        assert_eq!(
            ImageKind::sniff(b"RIFF\0\0\0\0WEBPVP8 "),
            Some(ImageKind::Webp)
        );
        assert_eq!(ImageKind::sniff(b"GIF89a"), None);
        assert_eq!(ImageKind::sniff(b"hello, I am a .png"), None);
    }

    #[test]
    fn rules_bound_size_and_dimensions() {
        let rules = ImageRules {
            max_bytes: 1000,
            min_side: 32,
            max_side: 4000,
        };
        let ok = rules.inspect(&png_header(640, 480)).unwrap();
        assert_eq!((ok.kind, ok.width, ok.height), (ImageKind::Png, 640, 480));
        assert_eq!(rules.inspect(&[]), Err(ImageError::Empty));
        assert_eq!(
            rules.inspect(&[0u8; 1001]),
            Err(ImageError::TooLarge { max: 1000 })
        );
        assert_eq!(
            rules.inspect(b"plain text renamed to .png"),
            Err(ImageError::UnsupportedType)
        );
        assert!(matches!(
            rules.inspect(&png_header(10, 480)),
            Err(ImageError::BadDimensions { .. })
        ));
        assert!(matches!(
            rules.inspect(&png_header(5000, 480)),
            Err(ImageError::BadDimensions { .. })
        ));
        assert_eq!(
            rules.inspect(b"\x89PNG\r\n\x1a\n"),
            Err(ImageError::Unreadable)
        );
    }
}
