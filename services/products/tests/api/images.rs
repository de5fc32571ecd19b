//! Images: type from the bytes, size and dimension limits, objects in the bucket behind presigned
//! URLs, primary image, deletion.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::*;

async fn product_id(app: &TestApp) -> String {
    let product = app.product("Mug", "kitchen", 1800, 1).await;
    product["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_uploaded_image_is_served_from_a_presigned_url() {
    let app = spawn_app().await;
    let id = product_id(&app).await;
    let bytes = png(300, 200, [10, 20, 30], [250, 200, 10]);
    // The client's name and type are ignored: the bytes say PNG.
    let response = app.upload(&id, bytes.clone(), "photo.jpeg", false).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(etag(&response), "\"v2\"");
    let product: Value = response.json().await.unwrap();
    let image = &product["images"][0];
    assert!(image["key"].as_str().unwrap().ends_with(".png"));
    assert_eq!(image["content_type"], "image/png");
    assert_eq!(
        (image["width"].as_u64(), image["height"].as_u64()),
        (Some(300), Some(200))
    );
    assert_eq!(image["bytes"].as_u64(), Some(bytes.len() as u64));
    assert_eq!(image["primary"], true, "the first image is the primary one");

    let url = image["url"].as_str().unwrap();
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let fetched = app.http.get(url).send().await.unwrap();
    assert_eq!(fetched.status(), StatusCode::OK);
    assert_eq!(fetched.headers()["content-type"], "image/png");
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), bytes.as_slice());

    // The bucket is private: a tampered signature or no signature is refused.
    let at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let flipped = if &url[at..at + 1] == "0" { "1" } else { "0" };
    let tampered = format!("{}{flipped}{}", &url[..at], &url[at + 1..]);
    assert_eq!(
        app.http.get(&tampered).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let unsigned = url.split('?').next().unwrap();
    assert_eq!(
        app.http.get(unsigned).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
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
        app.http.get(&url).send().await.unwrap().status(),
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
