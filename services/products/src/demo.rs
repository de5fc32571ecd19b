//! The demo catalog `cargo xtask up` seeds into a fresh stack (`products seed-demo`), with a
//! generated picture per product. Written through the store, so every product gets its events.

use bytes::Bytes;
use storefront_events::ProductId;
use storefront_events::{Money, products::Stock};

use crate::{
    domain::ImageRules,
    s3::Images,
    store::{ProductDoc, Store, StoreError},
};

/// A PNG of `width`×`height` pixels: a diagonal blend between two colours with a lighter disc in
/// the middle. Uncompressed (stored deflate blocks), so it needs no codec.
pub fn png(width: u32, height: u32, from: [u8; 3], to: [u8; 3]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(((width * 3 + 1) * height) as usize);
    let (cx, cy, r) = (
        width as i64 / 2,
        height as i64 / 2,
        width.min(height) as i64 / 4,
    );
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            let t = (x + y) as f32 / (width + height).max(1) as f32;
            let (dx, dy) = (x as i64 - cx, y as i64 - cy);
            let lift = if dx * dx + dy * dy <= r * r { 60 } else { 0 };
            for c in 0..3 {
                let v = from[c] as f32 * (1.0 - t) + to[c] as f32 * t;
                raw.push((v as u16 + lift).min(255) as u8);
            }
        }
    }
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    zlib.extend_from_slice(&adler32(&raw).to_be_bytes());

    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    chunk(&mut png, b"IHDR", &header);
    chunk(&mut png, b"IDAT", &zlib);
    chunk(&mut png, b"IEND", &[]);
    png
}

fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = png.len();
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let crc = crc32(&png[start..]);
    png.extend_from_slice(&crc.to_be_bytes());
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in bytes {
        a = (a + byte as u32) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

/// (title, category, price in cents, description) of the demo products.
const CATALOG: [(&str, &str, i64, &str); 30] = [
    (
        "Stoneware Mug",
        "kitchen",
        1800,
        "A heavy 350 ml mug glazed in speckled blue.",
    ),
    (
        "Pour-Over Coffee Set",
        "kitchen",
        4900,
        "Glass dripper, server and 100 paper filters.",
    ),
    (
        "Cast Iron Skillet",
        "kitchen",
        5400,
        "26 cm, pre-seasoned, for stove, oven and fire.",
    ),
    (
        "Chef's Knife",
        "kitchen",
        8900,
        "20 cm blade of high-carbon stainless steel.",
    ),
    (
        "Linen Tea Towels",
        "kitchen",
        2200,
        "Set of three, stonewashed linen.",
    ),
    (
        "Bamboo Cutting Board",
        "kitchen",
        2600,
        "Reversible board with a juice groove.",
    ),
    (
        "Merino Beanie",
        "apparel",
        3200,
        "Rib-knit merino wool, one size.",
    ),
    (
        "Organic Cotton T-Shirt",
        "apparel",
        2500,
        "Heavyweight jersey in washed black.",
    ),
    (
        "Rain Jacket",
        "apparel",
        12900,
        "Seam-sealed shell that packs into its pocket.",
    ),
    (
        "Wool Socks",
        "apparel",
        1600,
        "Cushioned hiking socks, two pairs.",
    ),
    (
        "Canvas Tote",
        "apparel",
        1900,
        "Waxed canvas with leather handles.",
    ),
    (
        "Leather Belt",
        "apparel",
        4500,
        "Full-grain leather, solid brass buckle.",
    ),
    (
        "Notebook A5",
        "stationery",
        1400,
        "Dot grid, 192 numbered pages, lay-flat binding.",
    ),
    (
        "Fountain Pen",
        "stationery",
        3800,
        "Steel nib, piston filler, demonstrator barrel.",
    ),
    (
        "Desk Lamp",
        "home",
        7900,
        "Adjustable arm, warm dimmable LED.",
    ),
    (
        "Wool Throw",
        "home",
        9900,
        "Lambswool blanket, 130 × 180 cm.",
    ),
    (
        "Ceramic Planter",
        "home",
        2900,
        "With drainage hole and saucer, 15 cm.",
    ),
    (
        "Scented Candle",
        "home",
        2400,
        "Soy wax with cedar and smoke, 40 hours.",
    ),
    (
        "Wall Clock",
        "home",
        5900,
        "Silent sweep movement, oak frame.",
    ),
    (
        "Throw Pillow",
        "home",
        3400,
        "Linen cover with a feather insert.",
    ),
    (
        "Wireless Earbuds",
        "electronics",
        8900,
        "Noise cancelling, 24 hours with the case.",
    ),
    (
        "Mechanical Keyboard",
        "electronics",
        11900,
        "Hot-swappable switches, aluminium case.",
    ),
    (
        "USB-C Charger",
        "electronics",
        3900,
        "65 W, two ports, folding plug.",
    ),
    (
        "Portable Speaker",
        "electronics",
        6900,
        "Waterproof, 12 hours of play.",
    ),
    (
        "E-Reader Sleeve",
        "electronics",
        2100,
        "Felt sleeve for 6 to 7 inch readers.",
    ),
    (
        "Yoga Mat",
        "outdoors",
        4200,
        "Natural rubber, 4 mm, non-slip.",
    ),
    (
        "Water Bottle",
        "outdoors",
        2800,
        "Insulated steel, 750 ml, keeps cold for 24 hours.",
    ),
    (
        "Camping Lantern",
        "outdoors",
        3600,
        "Rechargeable, three brightness levels.",
    ),
    (
        "Trail Backpack",
        "outdoors",
        9400,
        "28 litres with a rain cover.",
    ),
    (
        "Hammock",
        "outdoors",
        5200,
        "Parachute nylon with tree straps.",
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    S3(#[from] crate::s3::S3Error),
    #[error("a demo image: {0}")]
    Image(String),
}

/// Seeds the demo catalog unless the database has ever held a product. Returns how many it made.
pub async fn seed(store: &Store, images: &Images) -> Result<usize, SeedError> {
    if store.has_any_product().await? {
        return Ok(0);
    }
    for (i, (title, category, cents, description)) in CATALOG.iter().enumerate() {
        let id = ProductId::new();
        let hue = (i as u32 * 47) % 255;
        let from = [hue as u8, (255 - hue) as u8, 140];
        let to = [40, (hue / 2) as u8, (200 - hue.min(200)) as u8];
        // Stored as an upload would be: decoded and encoded again (a small JPEG).
        let prepared = tokio::task::spawn_blocking(move || {
            ImageRules::default().prepare(&png(400, 400, from, to))
        })
        .await
        .map_err(|e| SeedError::Image(e.to_string()))?
        .map_err(|e| SeedError::Image(e.to_string()))?;
        let image = prepared.reference(true);
        for file in prepared.into_files(&image) {
            images
                .put(
                    &Images::object_key(id, &file.key),
                    Bytes::from(file.bytes),
                    file.content_type,
                )
                .await?;
        }
        let now = mongodb::bson::DateTime::now();
        let product = ProductDoc {
            id,
            title: (*title).to_owned(),
            description: (*description).to_owned(),
            category: (*category).to_owned(),
            price: Money {
                amount: *cents,
                currency: "USD".into(),
            },
            images: vec![image],
            stock: Stock {
                available: [0, 3, 12, 25, 50][i % 5],
                reserved: 0,
                sold: 0,
            },
            deleted: false,
            version: 1,
            created_at: now,
            updated_at: now,
            views: 0,
        };
        store.create(&product, "demo-seed").await?;
    }
    Ok(CATALOG.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ImageKind;

    #[test]
    fn generated_pngs_pass_the_image_rules() {
        let bytes = png(120, 80, [10, 20, 30], [200, 100, 0]);
        let inspected = ImageRules::default().inspect(&bytes).unwrap();
        assert_eq!(
            (inspected.kind, inspected.width, inspected.height),
            (ImageKind::Png, 120, 80)
        );
    }

    #[test]
    fn checksums_match_known_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }
}
