//! `hangar env manifests`: the Kubernetes objects Hangar renders for an environment, printed
//! as one JSON `List` (what `kubectl apply -f -` and `kubectl diff -f -` take), its secrets
//! redacted. The environment comes from the control plane (`--tenant T NAME`, read with the
//! typed client), or from a create request in a file (`--spec FILE`), validated as the API
//! validates it, with no control plane at all.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use hangar_client::Client;
use hangar_tenants::api::CreateEnvironment;
use hangar_tenants::blueprint::kubernetes::{self, KubeCell, KubeInput, REDACTED};
use hangar_tenants::blueprint::Backends;
use hangar_tenants::{EnvironmentSpec, Platform, TenantName};
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::api::extract::parse_json_fields;

#[derive(Debug, Clone, clap::Args)]
pub struct ManifestsArgs {
    /// The environment, read from the control plane (with --tenant).
    #[arg(required_unless_present = "spec", conflicts_with = "spec")]
    pub name: Option<String>,
    #[arg(long, env = "HANGAR_TENANT")]
    pub tenant: Option<String>,
    /// A create-environment request (the JSON `POST …/environments` takes; `-` reads standard
    /// input), rendered without a control plane. Its tenant defaults to `example`.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<String>,
    /// With --spec: the environment's name, instead of the request's.
    #[arg(long = "name", value_name = "NAME", requires = "spec")]
    pub env_name: Option<String>,
    /// The Kubernetes cell's settings (JSON; absent settings take their defaults).
    #[arg(long, value_name = "FILE")]
    pub cell: Option<PathBuf>,
    /// Celery workers to render (default: the spec's min_workers).
    #[arg(long)]
    pub workers: Option<u32>,
}

/// The id an environment rendered from a file gets: derived from its tenant and name, so the
/// same file renders the same objects (the control plane assigns real ids at create).
fn file_environment_id(tenant: &TenantName, name: &str) -> Uuid {
    let digest = Sha256::digest(format!("hangar env manifests\0{tenant}\0{name}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

fn read(path: &str) -> anyhow::Result<Vec<u8>> {
    if path == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        return Ok(buf);
    }
    std::fs::read(path).with_context(|| format!("failed to read {path}"))
}

/// The spec of a create request in a file, refused as the API refuses it (naming the field).
fn spec_from_file(path: &str, name: Option<String>) -> anyhow::Result<EnvironmentSpec> {
    let bytes = read(path)?;
    let mut req: CreateEnvironment = parse_json_fields(&bytes)
        .with_context(|| format!("{path} is not a valid create-environment request"))?;
    if let Some(name) = name {
        req.name = name;
    }
    EnvironmentSpec::create(req, &Platform::default())
        .with_context(|| format!("{path} is not a valid create-environment request"))
}

fn tenant_name(tenant: &str) -> anyhow::Result<TenantName> {
    TenantName::parse(tenant).with_context(|| format!("invalid input: tenant: {tenant:?}"))
}

pub async fn run(client: &Client, a: ManifestsArgs) -> anyhow::Result<()> {
    let cell: KubeCell = match &a.cell {
        Some(path) => {
            let text = std::fs::read(path)
                .with_context(|| format!("failed to read {}", path.display()))?;
            parse_json_fields(&text)
                .with_context(|| format!("{} is not a valid cell settings file", path.display()))?
        }
        None => KubeCell::default(),
    };
    let (id, tenant, spec) = match (&a.spec, &a.name) {
        (Some(path), _) => {
            let tenant = tenant_name(a.tenant.as_deref().unwrap_or("example"))?;
            let spec = spec_from_file(path, a.env_name.clone())?;
            (
                file_environment_id(&tenant, spec.name.as_str()),
                tenant,
                spec,
            )
        }
        (None, Some(name)) => {
            let Some(tenant) = &a.tenant else {
                bail!(
                    "--tenant (or HANGAR_TENANT) is needed to read {name} from the control plane"
                );
            };
            let env = client.get_environment(tenant, name).await?;
            (env.id, tenant_name(&env.tenant)?, env.spec)
        }
        (None, None) => bail!("give an environment's NAME (with --tenant) or --spec FILE"),
    };
    let broker = hangar_data_plane::broker::BrokerUser::for_environment(
        id,
        SecretString::from(REDACTED.to_owned()),
    );
    let input = KubeInput {
        environment_id: id,
        tenant,
        workers: a.workers.unwrap_or(spec.min_workers),
        spec,
        secrets: None,
        backends: Backends {
            sql_alchemy_conn: REDACTED.to_owned(),
            broker_url: REDACTED.to_owned(),
            broker_key_prefix: broker.key_prefix,
        },
        cell,
        bucket_access: None,
    };
    let manifests = kubernetes::render(&input)?;
    let list = serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": manifests.objects,
    });
    // Written, not printed: a closed pipe (`| head`) is an error, not a panic.
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &list)?;
    writeln!(out)?;
    Ok(())
}
