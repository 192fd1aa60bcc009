//! The platform bucket and the DAG sync against real object-store emulators (moto for S3,
//! fake-gcs-server, Azurite), configured the way operators do: by `HANGAR_BUCKET_URL`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use futures::StreamExt;
use hangar_data_plane::bucket::Bucket;
use hangar_data_plane::dag_sync::DagSync;
use hangar_tests::emulators::{Azurite, FakeGcs, Moto};

async fn put(bucket: &Bucket, rel: &str, text: &str) {
    let p = Bucket::child(&bucket.dags_prefix("t", "e"), rel);
    bucket.put(&p, text.to_owned().into()).await.unwrap();
}

/// Creates, changes, ignores and deletes DAG files in `url`'s bucket and checks the folder
/// follows, downloading only what changed.
async fn sync_follows_the_bucket(url: &str) {
    let bucket = Bucket::from_url(url).unwrap();
    let home = tempfile_dir();
    put(&bucket, "a.py", "a = 1\n").await;
    put(&bucket, "team/b.py", "b = 1\n").await;
    put(&bucket, ".airflowignore", "scratch/\n").await;
    put(&bucket, "scratch/wip.py", "wip\n").await;
    let mut sync = DagSync::new(bucket.clone(), "t", "e", &home, true);
    let first = sync.sync().await.unwrap();
    assert_eq!(
        first.downloaded,
        [".airflowignore", "a.py", "team/b.py"],
        "{url}"
    );
    assert_eq!(first.ignored, 1);
    let read = |rel: &str| std::fs::read_to_string(home.join("dags").join(rel)).ok();
    assert_eq!(read("team/b.py").as_deref(), Some("b = 1\n"));
    assert_eq!(read("scratch/wip.py"), None);

    let idle = sync.sync().await.unwrap();
    assert!(!idle.switched && idle.bytes == 0, "{url}: {idle:?}");

    put(&bucket, "a.py", "a = 2\n").await;
    bucket
        .delete(&Bucket::child(&bucket.dags_prefix("t", "e"), "team/b.py"))
        .await
        .unwrap();
    let second = sync.sync().await.unwrap();
    assert_eq!(second.downloaded, ["a.py"], "{url}");
    assert_eq!(second.removed, ["team/b.py"], "{url}");
    assert_eq!(read("a.py").as_deref(), Some("a = 2\n"));
    assert_eq!(read("team/b.py"), None);
    let _ = std::fs::remove_dir_all(&home);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("hangar-sync-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn the_dag_sync_follows_s3() {
    let moto = Moto::start().await.unwrap();
    let url = moto.bucket_url("platform", "hangar").await.unwrap();
    sync_follows_the_bucket(&url).await;
}

#[tokio::test]
async fn the_dag_sync_follows_google_cloud_storage() {
    let gcs = FakeGcs::start().await.unwrap();
    let url = gcs.bucket_url("platform", "hangar").await.unwrap();
    sync_follows_the_bucket(&url).await;
}

#[tokio::test]
async fn the_dag_sync_follows_azure_blob_storage() {
    let azurite = Azurite::start().await.unwrap();
    let url = azurite.bucket_url("platform", "hangar").await.unwrap();
    sync_follows_the_bucket(&url).await;
}

#[tokio::test]
async fn a_2000_file_folder_with_one_change_downloads_one_file() {
    let moto = Moto::start().await.unwrap();
    let url = moto.bucket_url("platform", "big").await.unwrap();
    let bucket = Bucket::from_url(&url).unwrap();
    futures::stream::iter(0..2000)
        .map(|i| {
            let bucket = bucket.clone();
            async move { put(&bucket, &format!("d{}/dag_{i}.py", i % 20), "x = 1\n").await }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    let home = tempfile_dir();
    let mut sync = DagSync::new(bucket.clone(), "t", "e", &home, true);
    assert_eq!(sync.sync().await.unwrap().downloaded.len(), 2000);
    let t = Instant::now();
    let idle = sync.sync().await.unwrap();
    let idle_ms = t.elapsed().as_millis();
    assert_eq!((idle.listed, idle.downloaded.len()), (2000, 0));
    put(&bucket, "d7/dag_7.py", "x = 2\n").await;
    let one = sync.sync().await.unwrap();
    assert_eq!(one.downloaded, ["d7/dag_7.py"]);
    assert_eq!(one.bytes, 6);
    assert_eq!(
        std::fs::read_to_string(home.join("dags/d7/dag_7.py")).unwrap(),
        "x = 2\n"
    );
    assert_eq!(
        std::fs::read_to_string(home.join("dags/d3/dag_3.py")).unwrap(),
        "x = 1\n"
    );
    eprintln!("an unchanged 2,000-file sync cycle on moto: {idle_ms} ms");
    let _ = std::fs::remove_dir_all(&home);
}

/// A pre-signed URL from the API lets a plain HTTP client upload a DAG file straight into the
/// bucket, where the environment's listing sees it.
async fn upload_url_works(url: String) {
    let app = hangar_tests::spawn_app_with(move |s| s.bucket = Some(url)).await;
    let editor = app
        .tenant_with_role("acme", hangar_tenants::api::Role::Editor)
        .await
        .unwrap();
    editor
        .create_environment(
            "acme",
            &hangar_tenants::api::CreateEnvironment {
                name: "etl".into(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let u = editor
        .dag_upload_url("acme", "etl", "team/signed.py")
        .await
        .unwrap();
    assert_eq!(u.method, "PUT");
    let mut put = reqwest::Client::new().put(&u.url).body("signed = 1\n");
    if u.url.contains("sig=") {
        // Azure's SAS upload names the blob type.
        put = put.header("x-ms-blob-type", "BlockBlob");
    }
    let r = put.send().await.unwrap();
    assert!(
        r.status().is_success(),
        "{}: {}",
        r.status(),
        r.text().await.unwrap_or_default()
    );
    let files = editor.list_dags("acme", "etl").await.unwrap().files;
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].path, "team/signed.py");
    assert_eq!(
        editor
            .get_dag("acme", "etl", "team/signed.py")
            .await
            .unwrap(),
        b"signed = 1\n"
    );
}

#[tokio::test]
async fn pre_signed_upload_urls_work_on_s3_and_azure() {
    let moto = Moto::start().await.unwrap();
    upload_url_works(moto.bucket_url("signed", "hangar").await.unwrap()).await;
    let azurite = Azurite::start().await.unwrap();
    upload_url_works(azurite.bucket_url("signed", "hangar").await.unwrap()).await;
}

/// S3 allows keys such as `dags/../../x.py`, which object_store cannot represent: the listing
/// fails. The sync then stops with the key named and writes nothing; the folder keeps its last
/// good state until the key is removed (the other changes wait too).
#[tokio::test]
async fn an_escaping_key_on_s3_stops_the_sync_with_the_key_named_and_writes_nothing() {
    let moto = Moto::start().await.unwrap();
    let url = moto.bucket_url("escapes", "").await.unwrap();
    let bucket = Bucket::from_url(&url).unwrap();
    put(&bucket, "ok.py", "ok = 1\n").await;
    let home = tempfile_dir();
    let mut sync = DagSync::new(bucket.clone(), "t", "e", &home, true);
    assert_eq!(sync.sync().await.unwrap().downloaded, ["ok.py"]);

    let file = home.join("payload.py");
    std::fs::write(&file, "escaped = 1\n").unwrap();
    let aws = hangar_tests::emulators::tool("aws").unwrap();
    let out = std::process::Command::new(aws)
        .args(["s3api", "put-object", "--bucket", "escapes", "--key"])
        .arg("tenants/t/environments/e/dags/../../../escaped.py")
        .arg("--body")
        .arg(&file)
        .envs(moto.aws_env())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    put(&bucket, "new.py", "new = 1\n").await;

    let err = sync.sync().await.unwrap_err().to_string();
    assert!(err.contains("escaped.py"), "{err}");
    assert!(!home.join("escaped.py").exists());
    assert!(!home.parent().unwrap().join("escaped.py").exists());
    assert_eq!(
        std::fs::read_to_string(home.join("dags/ok.py")).unwrap(),
        "ok = 1\n",
        "the last good folder stays"
    );
    let _ = std::fs::remove_dir_all(&home);
}
