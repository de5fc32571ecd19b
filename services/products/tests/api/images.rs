//! Images: type from the bytes, size, dimension and pixel limits, encoded again, served by products
//! from the private bucket, primary image, deletion.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::*;

async fn product_id(app: &TestApp) -> String {
    let product = app.product("Mug", "kitchen", 1800, 1).await;
    product["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_uploaded_image_is_encoded_again_and_served_by_products() {
    let app = spawn_app().await;
    let id = product_id(&app).await;
    let bytes = png(300, 200, [10, 20, 30], [250, 200, 10]);
    // The client's name and type are ignored: the bytes say PNG; with no transparency it is
    // stored as a JPEG.
    let response = app.upload(&id, bytes.clone(), "photo.gif", false).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(etag(&response), "\"v2\"");
    let product: Value = response.json().await.unwrap();
    let image = &product["images"][0];
    let key = image["key"].as_str().unwrap();
    assert!(key.ends_with(".jpg"), "{key}");
    assert_eq!(image["content_type"], "image/jpeg");
    assert_eq!(
        (image["width"].as_u64(), image["height"].as_u64()),
        (Some(300), Some(200))
    );
    assert_eq!(image["primary"], true, "the first image is the primary one");

    // Served by products under the shop's origin, with its own headers, the same URL every time.
    let url = image["url"].as_str().unwrap();
    assert_eq!(url, format!("/api/products/{id}/images/{key}"));
    let again: Value = app.get(&format!("/{id}")).await.json().await.unwrap();
    assert_eq!(again["images"][0]["url"], url);
    let fetched = app
        .http
        .get(format!("http://{}{url}", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status(), StatusCode::OK);
    let headers = fetched.headers().clone();
    assert_eq!(headers["content-type"], "image/jpeg");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(
        headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let served = fetched.bytes().await.unwrap();
    assert!(served.starts_with(&[0xFF, 0xD8, 0xFF]), "a JPEG");
    assert_eq!(image["bytes"].as_u64(), Some(served.len() as u64));
    assert!(served.len() < bytes.len() / 4, "{} bytes", served.len());
    let unchanged = app
        .http
        .get(format!("http://{}{url}", app.addr))
        .header("if-none-match", headers["etag"].clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);

    // Keys that are not a stored image of this product.
    for path in [
        format!("/{id}/images/{}.jpg", uuid::Uuid::new_v4()),
        format!("/{id}/images/{}", key.replace(".jpg", ".png")),
        format!("/{id}/images/..%2Fsecret"),
        format!("/{}/images/{key}", uuid::Uuid::now_v7()),
    ] {
        problem(app.get(&path).await, StatusCode::NOT_FOUND, "not-found").await;
    }
}

/// A probe found polyglots (PNG or JPEG with an HTML page or a ZIP appended) stored and served as
/// they came, a PNG with a bad checksum accepted, and an 8000×8000 picture (192 MB to decode in
/// every shopper's browser) taken.
#[tokio::test]
async fn polyglots_damaged_and_oversized_pictures_are_not_stored_as_sent() {
    let app = spawn_app().await;
    let id = product_id(&app).await;
    let mut polyglot = png(64, 64, [0, 0, 0], [200, 200, 200]);
    polyglot.extend_from_slice(b"<html><script>alert(document.cookie)</script></html>PK\x03\x04");
    let response = app.upload(&id, polyglot, "x.png", false).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let product: Value = response.json().await.unwrap();
    let url = product["images"][0]["url"].as_str().unwrap();
    let served = app
        .http
        .get(format!("http://{}{url}", app.addr))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&served).contains("<script>"));

    // A bad checksum on the image data.
    let mut damaged = png(64, 64, [0, 0, 0], [1, 1, 1]);
    let idat = damaged.windows(4).position(|w| w == b"IDAT").unwrap();
    let length = u32::from_be_bytes(damaged[idat - 4..idat].try_into().unwrap()) as usize;
    damaged[idat + 4 + length] ^= 0xFF;
    let response = app.upload(&id, damaged, "crc.png", false).await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields(&body), ["file"]);

    // 8000×8000 by its header: refused before anything is decoded.
    let mut huge = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    huge.extend_from_slice(&8000u32.to_be_bytes());
    huge.extend_from_slice(&8000u32.to_be_bytes());
    huge.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    huge.extend_from_slice(&[0; 1024]);
    let response = app.upload(&id, huge, "huge.png", false).await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields(&body), ["file"]);
    assert!(body.to_string().contains("pixels"), "{body}");

    let product: Value = app.get(&format!("/{id}")).await.json().await.unwrap();
    assert_eq!(product["images"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_images_are_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    let id = product_id(&app).await;
    let response = app
        .upload(&id, b"just some text, renamed".to_vec(), "evil.png", false)
        .await;
    problem(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    )
    .await;
    let gif = b"GIF89a\x40\x00\x40\x00\x00\x00\x00;".to_vec();
    let response = app.upload(&id, gif, "anim.png", false).await;
    problem(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    )
    .await;

    // Over IMAGE_MAX_BYTES (256 KiB here): 400×400 RGB is ~480 KB.
    let response = app
        .upload(
            &id,
            png(400, 400, [0, 0, 0], [255, 255, 255]),
            "big.png",
            false,
        )
        .await;
    problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large").await;
    // Far over the route's limit: refused while reading.
    let response = app
        .upload(&id, vec![0x89; 2 * 1024 * 1024], "huge.png", false)
        .await;
    problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large").await;

    let response = app
        .upload(&id, png(16, 16, [0, 0, 0], [1, 1, 1]), "tiny.png", false)
        .await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields(&body), ["file"]);
    let mut damaged = png(64, 64, [0, 0, 0], [1, 1, 1]);
    damaged.truncate(12);
    let response = app.upload(&id, damaged, "cut.png", false).await;
    problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;

    // Not multipart, or multipart without the file.
    let response = app
        .send(
            Method::POST,
            &format!("/{id}/images"),
            Some(&app.admin),
            None,
            Some(serde_json::json!({ "file": "x" })),
        )
        .await;
    problem(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    )
    .await;
    let form = reqwest::multipart::Form::new().text("primary", "true");
    let response = app
        .http
        .post(app.url(&format!("/{id}/images")))
        .bearer_auth(&app.admin)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields(&body), ["file"]);

    let product: Value = app.get(&format!("/{id}")).await.json().await.unwrap();
    assert_eq!(product["version"], 1);
    assert_eq!(product["images"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn images_can_be_reordered_and_deleted() {
    let app = spawn_app().await;
    let id = product_id(&app).await;
    let first: Value = app
        .upload(&id, png(64, 64, [1, 1, 1], [2, 2, 2]), "a.png", false)
        .await
        .json()
        .await
        .unwrap();
    let second: Value = app
        .upload(&id, png(64, 64, [3, 3, 3], [4, 4, 4]), "b.png", true)
        .await
        .json()
        .await
        .unwrap();
    let images = second["images"].as_array().unwrap();
    let (a, b) = (
        images[0]["key"].as_str().unwrap(),
        images[1]["key"].as_str().unwrap(),
    );
    assert_eq!(first["images"][0]["key"], a);
    assert_eq!(
        (
            images[0]["primary"].as_bool(),
            images[1]["primary"].as_bool()
        ),
        (Some(false), Some(true))
    );

    let response = app
        .send(
            Method::POST,
            &format!("/{id}/images/{a}/primary"),
            Some(&app.admin),
            None,
            None,
        )
        .await;
    let product: Value = response.json().await.unwrap();
    assert_eq!(product["images"][0]["primary"], true);
    assert_eq!(product["images"][1]["primary"], false);

    // Deleting the primary makes the next one primary; the object is gone from the bucket.
    let url = product["images"][0]["url"].as_str().unwrap().to_owned();
    let response = app
        .send(
            Method::DELETE,
            &format!("/{id}/images/{a}"),
            Some(&app.admin),
            Some("\"v4\""),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let product: Value = response.json().await.unwrap();
    let images = product["images"].as_array().unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(
        (images[0]["key"].as_str(), images[0]["primary"].as_bool()),
        (Some(b), Some(true))
    );
    assert_eq!(
        app.http
            .get(format!("http://{}{url}", app.addr))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );

    for path in [
        format!("/{id}/images/{a}"),
        format!("/{id}/images/nope.png"),
    ] {
        let response = app
            .send(Method::DELETE, &path, Some(&app.admin), None, None)
            .await;
        problem(response, StatusCode::NOT_FOUND, "not-found").await;
    }
    let response = app
        .send(
            Method::DELETE,
            &format!("/{id}/images/{b}"),
            Some(&app.admin),
            Some("\"v1\""),
            None,
        )
        .await;
    problem(
        response,
        StatusCode::PRECONDITION_FAILED,
        "version-mismatch",
    )
    .await;
}

/// A photo-like JPEG of `width`×`height` (smooth colour with fine detail, as a camera's).
fn photo_jpeg(width: u32, height: u32) -> Vec<u8> {
    let picture = image::RgbImage::from_fn(width, height, |x, y| {
        let grain = ((x * 7 + y * 13) % 17) as u8;
        image::Rgb([(x % 256) as u8 ^ grain, (y % 256) as u8, 90 + grain])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(picture)
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .unwrap();
    out.into_inner()
}

/// The catalog showed 200-pixel tiles from full-size files (5.8 MB a page): a large image now gets
/// a thumbnail, served like it and removed with it.
#[tokio::test]
async fn a_large_image_gets_a_thumbnail_served_beside_it_and_removed_with_it() {
    let app = spawn_app().await;
    let id = product_id(&app).await;
    let response = app
        .upload(&id, photo_jpeg(1200, 900), "big.jpg", false)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let product: Value = response.json().await.unwrap();
    let image = &product["images"][0];
    let key = image["key"].as_str().unwrap().to_owned();
    let thumbnail = &image["thumbnail"];
    let small_key = key.replace(".jpg", "-thumb.jpg");
    assert_eq!(
        thumbnail["url"],
        format!("/api/products/{id}/images/{small_key}")
    );
    assert_eq!(
        (thumbnail["width"].as_u64(), thumbnail["height"].as_u64()),
        (Some(400), Some(300))
    );
    let small = app
        .http
        .get(format!(
            "http://{}{}",
            app.addr,
            thumbnail["url"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), StatusCode::OK);
    assert_eq!(small.headers()["content-type"], "image/jpeg");
    assert_eq!(small.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        small.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let small = small.bytes().await.unwrap();
    assert_eq!(thumbnail["bytes"].as_u64(), Some(small.len() as u64));
    let size = imagesize::blob_size(&small).unwrap();
    assert_eq!((size.width, size.height), (400, 300));
    assert!(
        (small.len() as u64) * 4 < image["bytes"].as_u64().unwrap(),
        "{} bytes against the image's {}",
        small.len(),
        image["bytes"]
    );

    // A small image needs none.
    let response = app
        .upload(&id, png(64, 64, [1, 1, 1], [2, 2, 2]), "small.png", false)
        .await;
    let product: Value = response.json().await.unwrap();
    assert_eq!(product["images"][1]["thumbnail"], Value::Null);

    // Deleting the image deletes both files from the bucket; neither is served any more.
    let objects = [
        storefront_products::s3::Images::object_key(id.parse().unwrap(), &key),
        storefront_products::s3::Images::object_key(id.parse().unwrap(), &small_key),
    ];
    for object in &objects {
        assert!(
            app.state.images.get(object).await.unwrap().is_some(),
            "{object}"
        );
    }
    let response = app
        .send(
            Method::DELETE,
            &format!("/{id}/images/{key}"),
            Some(&app.admin),
            None,
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    for object in &objects {
        assert!(
            app.state.images.get(object).await.unwrap().is_none(),
            "{object}"
        );
    }
    problem(
        app.get(&format!("/{id}/images/{small_key}")).await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
}
