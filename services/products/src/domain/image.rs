//! Image rules: the type is read from the bytes (never from the file name or the client's
//! `Content-Type`), the size, the dimensions and the pixel count are bounded, and every upload is
//! decoded and encoded again before it is stored.
//!
//! Re-encoding is what makes an upload safe to serve: a damaged file (a bad CRC, a cut stream)
//! does not decode and is refused; whatever rides after or inside the image data (an HTML page, a
//! ZIP archive: a polyglot) is not in the new file; and a huge picture is scaled down to
//! [`ImageRules::served_side`], so no shopper's browser decodes more than that. The result is a
//! JPEG, or a PNG when the image has transparency. An image larger than
//! [`ImageRules::thumbnail_side`] gets a thumbnail too, of that size and type, for the catalog and
//! small screens (`srcset`).

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, metadata::Orientation};

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

/// Limits an upload must meet, and the size the shop serves.
#[derive(Debug, Clone, Copy)]
pub struct ImageRules {
    pub max_bytes: usize,
    pub min_side: u32,
    pub max_side: u32,
    /// Width × height an upload may have: what decoding it costs (4 bytes a pixel).
    pub max_pixels: u64,
    /// The longest side of the stored image; larger uploads are scaled down to it.
    pub served_side: u32,
    /// The longest side of a thumbnail: twice the catalog's 200 CSS pixels, for 2× screens.
    pub thumbnail_side: u32,
}

impl Default for ImageRules {
    fn default() -> Self {
        ImageRules {
            max_bytes: 5 * 1024 * 1024,
            min_side: 32,
            max_side: 8000,
            max_pixels: 24_000_000,
            served_side: 1600,
            thumbnail_side: 400,
        }
    }
}

/// A picture encoded for the shop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub kind: ImageKind,
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}

/// An upload decoded and encoded again (and its thumbnail): what the shop stores and serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub image: Encoded,
    /// Only when the image is larger than [`ImageRules::thumbnail_side`].
    pub thumbnail: Option<Encoded>,
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
    #[error("the image is {width}×{height}, more than {max} pixels in all")]
    TooManyPixels { width: u32, height: u32, max: u64 },
    #[error("the image data is damaged: it cannot be decoded")]
    Damaged,
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
        if u64::from(width) * u64::from(height) > self.max_pixels {
            return Err(ImageError::TooManyPixels {
                width,
                height,
                max: self.max_pixels,
            });
        }
        Ok(Inspected {
            kind,
            width,
            height,
        })
    }

    /// Checks `bytes` ([`ImageRules::inspect`]), decodes them (within the rules' bounds, whatever
    /// the header said), scales the picture down to [`ImageRules::served_side`] and encodes it
    /// again, with a thumbnail when it is larger than [`ImageRules::thumbnail_side`]. CPU work:
    /// call it off the async runtime.
    pub fn prepare(&self, bytes: &[u8]) -> Result<Prepared, ImageError> {
        let inspected = self.inspect(bytes)?;
        let format = match inspected.kind {
            ImageKind::Jpeg => ImageFormat::Jpeg,
            ImageKind::Png => ImageFormat::Png,
            ImageKind::Webp => ImageFormat::WebP,
        };
        let mut limits = Limits::default();
        limits.max_image_width = Some(self.max_side);
        limits.max_image_height = Some(self.max_side);
        limits.max_alloc = Some(self.max_pixels * 4 + 16 * 1024 * 1024);
        let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
        reader.limits(limits);
        let failed = |e: image::ImageError| match e {
            // 16-bit channels and the like can cost more than the pixel count says.
            image::ImageError::Limits(_) => ImageError::TooManyPixels {
                width: inspected.width,
                height: inspected.height,
                max: self.max_pixels,
            },
            _ => ImageError::Damaged,
        };
        let mut decoder = reader.into_decoder().map_err(failed)?;
        // A phone's portrait photo is stored sideways with an EXIF note to turn it; the new file
        // has no EXIF, so the turn is made here.
        let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
        let mut picture = DynamicImage::from_decoder(decoder).map_err(failed)?;
        picture.apply_orientation(orientation);
        if picture.width().max(picture.height()) > self.served_side {
            // Area averaging: sharp for large reductions, and no float copy of the whole picture.
            picture = picture.thumbnail(self.served_side, self.served_side);
        }
        let see_through =
            picture.color().has_alpha() && picture.to_rgba8().pixels().any(|p| p[3] < 255);
        let image = encode(&picture, see_through, 85)?;
        let thumbnail = if picture.width().max(picture.height()) > self.thumbnail_side {
            let small = picture.thumbnail(self.thumbnail_side, self.thumbnail_side);
            // Quality 80: at 200–400 pixels the difference from 85 does not show, the bytes do.
            Some(encode(&small, see_through, 80)?)
        } else {
            None
        };
        Ok(Prepared { image, thumbnail })
    }
}

/// A thumbnail's key beside its image's: `{uuid}-thumb.{extension}`.
pub fn thumbnail_key(stem: &uuid::Uuid, kind: ImageKind) -> String {
    format!("{stem}-thumb.{}", kind.extension())
}

impl Prepared {
    /// What the product records of it, under a new key (`{uuid}.{extension}`, never reused; its
    /// thumbnail's is `{uuid}-thumb.{extension}`).
    pub fn reference(&self, primary: bool) -> storefront_events::products::ImageRef {
        let stem = uuid::Uuid::new_v4();
        let image = &self.image;
        storefront_events::products::ImageRef {
            key: format!("{stem}.{}", image.kind.extension()),
            content_type: image.kind.content_type().to_owned(),
            width: image.width,
            height: image.height,
            bytes: image.bytes.len() as u64,
            primary,
            thumbnail: self.thumbnail.as_ref().map(|small| {
                storefront_events::products::Thumbnail {
                    key: thumbnail_key(&stem, small.kind),
                    width: small.width,
                    height: small.height,
                    bytes: small.bytes.len() as u64,
                }
            }),
        }
    }

    /// The files to store for `reference` (what [`Prepared::reference`] made of this upload):
    /// `(key within the product, bytes, content type)`, the image first.
    pub fn into_files(self, reference: &storefront_events::products::ImageRef) -> Vec<File> {
        let mut files = vec![File {
            key: reference.key.clone(),
            content_type: self.image.kind.content_type(),
            bytes: self.image.bytes,
        }];
        if let (Some(small), Some(named)) = (self.thumbnail, &reference.thumbnail) {
            files.push(File {
                key: named.key.clone(),
                content_type: small.kind.content_type(),
                bytes: small.bytes,
            });
        }
        files
    }
}

/// One file of an image to store.
#[derive(Debug)]
pub struct File {
    pub key: String,
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

/// A PNG when some pixel is see-through, else a JPEG of `quality` (85: a product photo's size).
fn encode(picture: &DynamicImage, see_through: bool, quality: u8) -> Result<Encoded, ImageError> {
    let mut out = Cursor::new(Vec::new());
    let kind = if see_through {
        picture
            .write_to(&mut out, ImageFormat::Png)
            .map_err(|_| ImageError::Damaged)?;
        ImageKind::Png
    } else {
        let rgb = DynamicImage::ImageRgb8(picture.to_rgb8());
        rgb.write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(
            &mut out, quality,
        ))
        .map_err(|_| ImageError::Damaged)?;
        ImageKind::Jpeg
    };
    Ok(Encoded {
        kind,
        width: picture.width(),
        height: picture.height(),
        bytes: out.into_inner(),
    })
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
            max_pixels: 4_000_000,
            served_side: 1600,
            thumbnail_side: 400,
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
        assert!(matches!(
            rules.inspect(&png_header(3000, 3000)),
            Err(ImageError::TooManyPixels { .. })
        ));
    }

    fn encoded(picture: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        picture.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    fn photo(width: u32, height: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
        }))
    }

    #[test]
    fn uploads_are_encoded_again_and_scaled_to_the_served_size() {
        let rules = ImageRules::default();
        let png = encoded(photo(2000, 1000), ImageFormat::Png);
        let prepared = rules.prepare(&png).unwrap();
        let image = &prepared.image;
        assert_eq!(image.kind, ImageKind::Jpeg, "no transparency: a JPEG");
        assert_eq!((image.width, image.height), (1600, 800));
        assert_eq!(ImageKind::sniff(&image.bytes), Some(ImageKind::Jpeg));
        let size = imagesize::blob_size(&image.bytes).unwrap();
        assert_eq!((size.width, size.height), (1600, 800));

        let clear = DynamicImage::ImageRgba8(image::RgbaImage::from_fn(64, 64, |x, _| {
            image::Rgba([255, 0, 0, if x < 32 { 0 } else { 255 }])
        }));
        let prepared = rules.prepare(&encoded(clear, ImageFormat::WebP)).unwrap();
        assert_eq!(prepared.image.kind, ImageKind::Png, "transparency is kept");
        assert_eq!((prepared.image.width, prepared.image.height), (64, 64));
        assert_eq!(prepared.thumbnail, None, "no smaller copy of a small image");
    }

    #[test]
    fn a_large_image_gets_a_thumbnail_of_its_type_named_beside_it() {
        let rules = ImageRules::default();
        let prepared = rules
            .prepare(&encoded(photo(1200, 900), ImageFormat::Png))
            .unwrap();
        let small = prepared.thumbnail.as_ref().expect("a thumbnail");
        assert_eq!(
            (small.kind, small.width, small.height),
            (ImageKind::Jpeg, 400, 300)
        );
        let size = imagesize::blob_size(&small.bytes).unwrap();
        assert_eq!((size.width, size.height), (400, 300));
        assert!(small.bytes.len() * 4 < prepared.image.bytes.len());

        let reference = prepared.reference(true);
        let named = reference.thumbnail.clone().expect("named in the reference");
        let stem = reference.key.strip_suffix(".jpg").unwrap();
        assert_eq!(named.key, format!("{stem}-thumb.jpg"));
        assert_eq!((named.width, named.height), (400, 300));
        let files = prepared.into_files(&reference);
        let keys: Vec<_> = files.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(keys, [reference.key.as_str(), named.key.as_str()]);
        assert_eq!(files[1].bytes.len() as u64, named.bytes);
        assert_eq!(files[1].content_type, "image/jpeg");

        // At the thumbnail's size or below, the image itself is small enough.
        let exact = rules
            .prepare(&encoded(photo(400, 400), ImageFormat::Png))
            .unwrap();
        assert_eq!(exact.thumbnail, None);
        assert_eq!(exact.reference(false).thumbnail, None);
    }

    #[test]
    fn a_photo_taken_sideways_is_turned_as_its_exif_says() {
        let jpeg = encoded(photo(64, 32), ImageFormat::Jpeg);
        // APP1 "Exif": a little-endian TIFF header and one IFD entry, Orientation (0x0112) = 6
        // (turn 90° clockwise to view).
        let mut tiff = b"II*\0\x08\0\0\0".to_vec();
        tiff.extend_from_slice(&1u16.to_le_bytes());
        tiff.extend_from_slice(&0x0112u16.to_le_bytes());
        tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_le_bytes());
        tiff.extend_from_slice(&[6, 0, 0, 0]);
        tiff.extend_from_slice(&0u32.to_le_bytes());
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let mut with_exif = jpeg[..2].to_vec();
        with_exif.extend_from_slice(&[0xFF, 0xE1]);
        with_exif.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        with_exif.extend_from_slice(&app1);
        with_exif.extend_from_slice(&jpeg[2..]);
        let prepared = ImageRules::default().prepare(&with_exif).unwrap();
        assert_eq!((prepared.image.width, prepared.image.height), (32, 64));
    }

    #[test]
    fn what_rides_along_an_image_is_not_stored() {
        let rules = ImageRules::default();
        for format in [ImageFormat::Png, ImageFormat::Jpeg] {
            let mut polyglot = encoded(photo(64, 64), format);
            polyglot.extend_from_slice(b"<html><script>alert(1)</script></html>PK\x03\x04");
            let prepared = rules.prepare(&polyglot).unwrap();
            let text = String::from_utf8_lossy(&prepared.image.bytes);
            assert!(!text.contains("<script>"), "{format:?}");
            assert!(!text.contains("PK\u{3}\u{4}"), "{format:?}");
        }
    }

    #[test]
    fn damaged_data_is_refused() {
        let rules = ImageRules::default();
        // A PNG whose image data's checksum is wrong.
        let mut png = encoded(photo(64, 64), ImageFormat::Png);
        let idat = png.windows(4).position(|w| w == b"IDAT").unwrap();
        let length = u32::from_be_bytes(png[idat - 4..idat].try_into().unwrap()) as usize;
        let crc = idat + 4 + length;
        png[crc] ^= 0xFF;
        assert_eq!(rules.prepare(&png), Err(ImageError::Damaged));
        // A JPEG cut after its header.
        let jpeg = encoded(photo(64, 64), ImageFormat::Jpeg);
        assert_eq!(
            rules.prepare(&jpeg[..jpeg.len() / 3]),
            Err(ImageError::Damaged)
        );
    }
}
