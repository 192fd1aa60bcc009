//! `hangar_token` and `hangar_access_key`: a tenant's credentials. Their secret is known only
//! when they are created (Hangar keeps a hash), so it is in the state of the resource that
//! created it and nowhere else; every attribute a configuration sets replaces the credential;
//! destroy revokes it.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use async_trait::async_trait;
use hangar_client::{Client, ClientError};
use hangar_tenants::api::{CreateAccessKey, CreateToken, Role};
use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, Schema,
};
use tf_provider::value::{Value, ValueEmpty, ValueString};
use tf_provider::{AttributePath, Diagnostics, Resource};
use uuid::Uuid;

use crate::common::{api_error, attr, attributes, is_not_found, known, string};
use crate::Connection;

/// What Hangar says of a credential.
pub struct Info {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    /// The part that may be shown: a token's prefix, an access key's ID.
    pub public: String,
    pub created_at: String,
    pub revoked: bool,
}

/// One kind of credential: its attribute names and its API calls.
#[async_trait]
pub trait Kind: Send + Sync + 'static {
    /// The resource type, e.g. `hangar_token`.
    const TYPE: &'static str;
    /// In words, e.g. `token`.
    const WHAT: &'static str;
    /// The attribute of its UUID.
    const ID_ATTR: &'static str;
    /// The attribute of its public part.
    const PUBLIC_ATTR: &'static str;
    /// The attribute of its secret.
    const SECRET_ATTR: &'static str;
    /// Whether its `id` (and import ID) is `tenant/<public part>` rather than its UUID.
    const ID_IS_PUBLIC: bool;
    fn description() -> &'static str;
    fn public_description() -> &'static str;
    fn secret_description() -> &'static str;
    async fn create(
        client: &Client,
        tenant: &str,
        name: String,
        role: Role,
    ) -> Result<(Info, String), ClientError>;
    async fn list(client: &Client, tenant: &str) -> Result<Vec<Info>, ClientError>;
    async fn revoke(client: &Client, tenant: &str, id: Uuid) -> Result<(), ClientError>;
}

pub struct Token;
pub struct AccessKey;

#[async_trait]
impl Kind for Token {
    const TYPE: &'static str = "hangar_token";
    const WHAT: &'static str = "token";
    const ID_ATTR: &'static str = "token_id";
    const PUBLIC_ATTR: &'static str = "prefix";
    const SECRET_ATTR: &'static str = "value";
    const ID_IS_PUBLIC: bool = false;

    fn description() -> &'static str {
        "A tenant token (bearer token of Hangar's API, the CLI and this provider) with a role: \
         `viewer`, `editor` or `admin`. Its `value` is known only from the apply that created \
         it. Destroying it revokes it. Import with `terraform import hangar_token.NAME \
         tenant/token_id` (`value` is then unknown to Terraform)."
    }
    fn public_description() -> &'static str {
        "The token's first characters, to recognise it."
    }
    fn secret_description() -> &'static str {
        "The token (sensitive), e.g. for another provider block or a CI secret."
    }

    async fn create(
        client: &Client,
        tenant: &str,
        name: String,
        role: Role,
    ) -> Result<(Info, String), ClientError> {
        let t = client
            .create_token(tenant, &CreateToken { name, role })
            .await?;
        // The prefix as Hangar shows it in its lists.
        let public = Self::list(client, tenant)
            .await?
            .into_iter()
            .find(|i| i.id == t.id)
            .map(|i| i.public)
            .unwrap_or_default();
        Ok((
            Info {
                id: t.id,
                name: t.name,
                role: t.role,
                public,
                created_at: t.created_at.to_rfc3339(),
                revoked: false,
            },
            t.token,
        ))
    }

    async fn list(client: &Client, tenant: &str) -> Result<Vec<Info>, ClientError> {
        Ok(client
            .list_tokens(tenant)
            .await?
            .tokens
            .into_iter()
            .map(|t| Info {
                id: t.id,
                name: t.name,
                role: t.role,
                public: t.prefix,
                created_at: t.created_at.to_rfc3339(),
                revoked: t.revoked_at.is_some(),
            })
            .collect())
    }

    async fn revoke(client: &Client, tenant: &str, id: Uuid) -> Result<(), ClientError> {
        client.revoke_token(tenant, id).await
    }
}

#[async_trait]
impl Kind for AccessKey {
    const TYPE: &'static str = "hangar_access_key";
    const WHAT: &'static str = "access key";
    const ID_ATTR: &'static str = "key_id";
    const PUBLIC_ATTR: &'static str = "access_key_id";
    const SECRET_ATTR: &'static str = "secret_access_key";
    const ID_IS_PUBLIC: bool = true;

    fn description() -> &'static str {
        "An access key of a tenant for the MWAA-compatible API (AWS Signature V4: `aws mwaa`, \
         boto3, `aws_mwaa_environment` pointed at Hangar), with a role. Its \
         `secret_access_key` is known only from the apply that created it. Destroying it \
         revokes it. Import with `terraform import hangar_access_key.NAME \
         tenant/access_key_id`."
    }
    fn public_description() -> &'static str {
        "The AWS access key ID."
    }
    fn secret_description() -> &'static str {
        "The AWS secret access key (sensitive)."
    }

    async fn create(
        client: &Client,
        tenant: &str,
        name: String,
        role: Role,
    ) -> Result<(Info, String), ClientError> {
        let k = client
            .create_access_key(tenant, &CreateAccessKey { name, role })
            .await?;
        Ok((
            Info {
                id: k.id,
                name: k.name,
                role: k.role,
                public: k.access_key_id,
                created_at: k.created_at.to_rfc3339(),
                revoked: false,
            },
            k.secret_access_key,
        ))
    }

    async fn list(client: &Client, tenant: &str) -> Result<Vec<Info>, ClientError> {
        Ok(client
            .list_access_keys(tenant)
            .await?
            .access_keys
            .into_iter()
            .map(|k| Info {
                id: k.id,
                name: k.name,
                role: k.role,
                public: k.access_key_id,
                created_at: k.created_at.to_rfc3339(),
                revoked: k.revoked_at.is_some(),
            })
            .collect())
    }

    async fn revoke(client: &Client, tenant: &str, id: Uuid) -> Result<(), ClientError> {
        client.revoke_access_key(tenant, &id.to_string()).await
    }
}

/// A credential's state: every attribute is a string, so the state is a map by attribute
/// name (the two kinds name their public and secret parts differently).
pub type CredentialState<'a> = BTreeMap<String, ValueString<'a>>;

/// The attributes a configuration sets; any change replaces the credential.
const CONFIGURED: [&str; 3] = ["tenant", "name", "role"];

pub struct CredentialResource<K: Kind> {
    connection: Connection,
    kind: PhantomData<K>,
}

pub type TokenResource = CredentialResource<Token>;
pub type AccessKeyResource = CredentialResource<AccessKey>;

fn get<'b>(s: &'b CredentialState<'_>, k: &str) -> Option<&'b str> {
    s.get(k).and_then(known)
}

impl<K: Kind> CredentialResource<K> {
    pub fn new(connection: Connection) -> Self {
        Self {
            connection,
            kind: PhantomData,
        }
    }

    pub fn resource_schema() -> Schema {
        let computed = |d: &str| attr(AttributeType::String, AttributeConstraint::Computed, d);
        let required = |d: &str| attr(AttributeType::String, AttributeConstraint::Required, d);
        Schema {
            version: 1,
            block: Block {
                description: Description::markdown(K::description()),
                attributes: attributes([
                    ("id", computed("`tenant/ID`.")),
                    (
                        "tenant",
                        required("The tenant. Changing it replaces the credential."),
                    ),
                    (
                        "name",
                        required("A name for people. Changing it replaces the credential."),
                    ),
                    (
                        "role",
                        required(
                            "`viewer`, `editor` or `admin`. Changing it replaces the credential.",
                        ),
                    ),
                    (K::ID_ATTR, computed("Its UUID.")),
                    (K::PUBLIC_ATTR, computed(K::public_description())),
                    (
                        K::SECRET_ATTR,
                        Attribute {
                            sensitive: true,
                            ..computed(K::secret_description())
                        },
                    ),
                    ("created_at", computed("When it was created (RFC 3339).")),
                ]),
                ..Default::default()
            },
        }
    }

    /// The state of a credential Hangar described; `secret` when it was just created.
    fn state<'a>(tenant: &str, info: &Info, secret: ValueString<'a>) -> CredentialState<'a> {
        let mut s = CredentialState::new();
        let id = if K::ID_IS_PUBLIC {
            info.public.clone()
        } else {
            info.id.to_string()
        };
        s.insert("id".into(), string(format!("{tenant}/{id}")));
        s.insert("tenant".into(), string(tenant));
        s.insert("name".into(), string(info.name.clone()));
        s.insert("role".into(), string(info.role.as_str()));
        s.insert(K::ID_ATTR.into(), string(info.id.to_string()));
        s.insert(K::PUBLIC_ATTR.into(), string(info.public.clone()));
        s.insert(K::SECRET_ATTR.into(), secret);
        s.insert("created_at".into(), string(info.created_at.clone()));
        s
    }

    /// The credential `key` names (its UUID, or for an access key also its key ID), live.
    async fn find(client: &Client, tenant: &str, key: &str) -> Result<Option<Info>, ClientError> {
        Ok(K::list(client, tenant)
            .await?
            .into_iter()
            .find(|i| !i.revoked && (i.id.to_string() == key || i.public == key)))
    }
}

#[async_trait]
impl<K: Kind> Resource for CredentialResource<K> {
    type State<'a> = CredentialState<'a>;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(Self::resource_schema())
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::State<'a>) -> Option<()> {
        if let Some(r) = get(&config, "role") {
            if Role::parse(r).is_none() {
                diags.error(
                    format!("role: unknown role {r:?}"),
                    "A role is `viewer`, `editor` or `admin`.",
                    AttributePath::new("role"),
                );
            }
        }
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.connection.client(diags)?;
        let tenant = get(&state, "tenant").unwrap_or_default().to_owned();
        let id = get(&state, K::ID_ATTR).unwrap_or_default().to_owned();
        match Self::find(&client, &tenant, &id).await {
            Ok(Some(info)) => {
                let secret = state.get(K::SECRET_ATTR).cloned().unwrap_or(Value::Null);
                Some((Self::state(&tenant, &info, secret), private))
            }
            Ok(None) => None,
            Err(e) if is_not_found(&e) => None,
            Err(e) => {
                diags.root_error(
                    format!("Reading {} {id} of {tenant}", K::WHAT),
                    e.to_string(),
                );
                Some((state, private))
            }
        }
    }

    async fn plan_create<'a>(
        &self,
        _diags: &mut Diagnostics,
        proposed: Self::State<'a>,
        _config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let mut s = proposed;
        for a in [
            "id",
            K::ID_ATTR,
            K::PUBLIC_ATTR,
            K::SECRET_ATTR,
            "created_at",
        ] {
            s.insert(a.into(), Value::Unknown);
        }
        Some((s, Value::Null))
    }

    async fn plan_update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        proposed: Self::State<'a>,
        config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>, Vec<AttributePath>)> {
        let replace: Vec<AttributePath> = CONFIGURED
            .into_iter()
            .filter(|a| prior.get(*a) != proposed.get(*a))
            .map(AttributePath::new)
            .collect();
        if replace.is_empty() {
            return Some((proposed, private, replace));
        }
        let (s, _) = self.plan_create(diags, proposed, config, meta).await?;
        Some((s, private, replace))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::PrivateState<'a>> {
        Some(private)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.connection.client(diags)?;
        let tenant = get(&planned, "tenant").unwrap_or_default().to_owned();
        let name = get(&planned, "name").unwrap_or_default().to_owned();
        let role = get(&planned, "role").and_then(Role::parse)?;
        match K::create(&client, &tenant, name, role).await {
            Ok((info, secret)) => Some((Self::state(&tenant, &info, string(secret)), private)),
            Err(e) => {
                api_error(diags, &format!("Creating {} of {tenant}", K::WHAT), &e, &[]);
                None
            }
        }
    }

    async fn update<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: Self::State<'a>,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        // Every attribute a configuration sets replaces the credential: nothing to send.
        Some((planned, private))
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        _private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<()> {
        let client = self.connection.client(diags)?;
        let tenant = get(&prior, "tenant").unwrap_or_default().to_owned();
        let Some(id) = get(&prior, K::ID_ATTR).and_then(|i| Uuid::parse_str(i).ok()) else {
            return Some(());
        };
        match K::revoke(&client, &tenant, id).await {
            Ok(()) => Some(()),
            Err(e) if is_not_found(&e) => Some(()),
            Err(e) => {
                diags.root_error(
                    format!("Revoking {} {id} of {tenant}", K::WHAT),
                    e.to_string(),
                );
                None
            }
        }
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        id: String,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.connection.client(diags)?;
        let Some((tenant, key)) = id.split_once('/') else {
            diags.root_error(
                format!("Invalid import ID {id:?}"),
                format!("Import a {} by `tenant/ID`.", K::WHAT),
            );
            return None;
        };
        match Self::find(&client, tenant, key).await {
            Ok(Some(info)) => Some((Self::state(tenant, &info, Value::Null), Value::Null)),
            Ok(None) => {
                diags.root_error(
                    format!("No live {} {key} in tenant {tenant}", K::WHAT),
                    "It does not exist, or it was revoked.",
                );
                None
            }
            Err(e) => {
                diags.root_error(format!("Importing {} {id}", K::WHAT), e.to_string());
                None
            }
        }
    }
}
