//! The object-store emulators the harness starts (moto, fake-gcs-server, Azurite), driven through
//! `object_store` as the DAG sync engine drives a tenant's bucket: put, list under a prefix (with
//! the ETag, size and modification time the sync compares) and get.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use futures::TryStreamExt;
use hangar_tests::emulators::{tool, Azurite, FakeGcs, Moto};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};

const DAG: &[u8] = b"from airflow.sdk import dag\n";

/// Puts two objects under `dags/` and one outside, checks what a prefix listing and a get
/// return, then that replacing an object changes its ETag in the next listing.
///
/// ETags are compared between listings only: their forms differ by API and service (S3 quotes
/// them everywhere; Azure's List Blobs and GCS's JSON listing give them bare, their GETs quoted;
/// real GCS even gives a different value in its listing than in an object's headers), and
/// object_store passes them on as they come.
async fn put_list_get(store: Arc<dyn ObjectStore>) {
    let dag = Path::from("dags/etl/daily.py");
    store.put(&dag, PutPayload::from_static(DAG)).await.unwrap();
    store
        .put(&Path::from("dags/hourly.py"), PutPayload::from_static(b"x"))
        .await
        .unwrap();
    store
        .put(&Path::from("plugins/p.py"), PutPayload::from_static(b"p"))
        .await
        .unwrap();

    let listed = list(&store, "dags").await;
    let names: Vec<&str> = listed.iter().map(|m| m.location.as_ref()).collect();
    assert_eq!(names, ["dags/etl/daily.py", "dags/hourly.py"]);
    let daily = &listed[0];
    assert_eq!(daily.size, DAG.len() as u64);
    assert!(
        daily.e_tag.as_deref().is_some_and(|e| !e.is_empty()),
        "no ETag in the listing: {daily:?}"
    );
    let age = chrono::Utc::now() - daily.last_modified;
    assert!(
        age.num_seconds().abs() < 300,
        "implausible last_modified: {daily:?}"
    );

    let got = store.get(&dag).await.unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), DAG);

    store
        .put(&dag, PutPayload::from_static(b"changed"))
        .await
        .unwrap();
    let relisted = list(&store, "dags/etl").await;
    assert_eq!(relisted.len(), 1);
    assert_eq!(relisted[0].size, 7);
    assert_ne!(
        relisted[0].e_tag, daily.e_tag,
        "ETag unchanged by a new version"
    );
}

/// Everything under `prefix`, by name.
async fn list(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<ObjectMeta> {
    let mut listed: Vec<ObjectMeta> = store
        .list(Some(&Path::from(prefix)))
        .try_collect()
        .await
        .unwrap();
    listed.sort_by(|a, b| a.location.cmp(&b.location));
    listed
}

#[tokio::test]
async fn moto_serves_put_list_and_get_through_object_store() {
    let moto = Moto::start().await.unwrap();
    put_list_get(moto.store("tenant-a-dags").await.unwrap()).await;
}

#[tokio::test]
async fn aws_cli_lists_an_object_put_through_object_store_on_moto() {
    let moto = Moto::start().await.unwrap();
    let store = moto.store("tenant-b-dags").await.unwrap();
    store
        .put(&Path::from("dags/a.py"), PutPayload::from_static(DAG))
        .await
        .unwrap();
    let out = tokio::process::Command::new(tool("aws").unwrap())
        .args(["s3", "ls", "--recursive", "s3://tenant-b-dags/dags/"])
        .envs(moto.aws_env())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "aws s3 ls failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("dags/a.py"), "{stdout}");
}

#[tokio::test]
async fn fake_gcs_serves_put_list_and_get_through_object_store() {
    let gcs = FakeGcs::start().await.unwrap();
    put_list_get(gcs.store("tenant-a-dags").await.unwrap()).await;
}

#[tokio::test]
async fn azurite_serves_put_list_and_get_through_object_store() {
    let azurite = Azurite::start().await.unwrap();
    put_list_get(azurite.store("tenant-a-dags").await.unwrap()).await;
}
