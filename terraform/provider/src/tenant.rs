//! `hangar_tenant`: a tenant of the platform (the provider configured with the platform admin
//! token). Hangar has no rename: a change of `name` or `display_name` replaces the tenant, and
//! a tenant is deleted only once it has no environment left.

use async_trait::async_trait;
use hangar_tenants::api::{CreateTenant, Tenant};
use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeConstraint, AttributeType, Block, Description, Schema};
use tf_provider::value::{Value, ValueEmpty, ValueString};
use tf_provider::{AttributePath, Diagnostics, Resource};

use crate::common::{api_error, attr, attributes, is_not_found, known, opt_string, string};
use crate::Connection;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TenantState<'a> {
    #[serde(borrow = "'a")]
    pub id: ValueString<'a>,
    pub name: ValueString<'a>,
    pub display_name: ValueString<'a>,
    pub tenant_id: ValueString<'a>,
    pub created_at: ValueString<'a>,
}

impl<'a> TenantState<'a> {
    fn from_api(t: &Tenant) -> Self {
        Self {
            id: string(t.name.clone()),
            name: string(t.name.clone()),
            display_name: opt_string(t.display_name.clone()),
            tenant_id: string(t.id.to_string()),
            created_at: string(t.created_at.to_rfc3339()),
        }
    }
}

pub struct TenantResource {
    connection: Connection,
}

impl TenantResource {
    pub fn new(connection: Connection) -> Self {
        Self { connection }
    }

    pub fn resource_schema() -> Schema {
        let computed = |d: &str| attr(AttributeType::String, AttributeConstraint::Computed, d);
        Schema {
            version: 1,
            block: Block {
                description: Description::markdown(
                    "A tenant: a team with its own environments, tokens and access keys. Needs \
                     the platform admin token. Deleting it deletes its tokens, access keys and \
                     audit log, and is refused while it has environments. Import with \
                     `terraform import hangar_tenant.NAME name`.",
                ),
                attributes: attributes([
                    ("id", computed("The tenant's name, the import ID.")),
                    (
                        "name",
                        attr(
                            AttributeType::String,
                            AttributeConstraint::Required,
                            "The tenant's name, an RFC 1123 label. Changing it replaces the \
                             tenant.",
                        ),
                    ),
                    (
                        "display_name",
                        attr(
                            AttributeType::String,
                            AttributeConstraint::Optional,
                            "A name for people. Changing it replaces the tenant.",
                        ),
                    ),
                    ("tenant_id", computed("The tenant's UUID.")),
                    (
                        "created_at",
                        computed("When the tenant was created (RFC 3339)."),
                    ),
                ]),
                ..Default::default()
            },
        }
    }
}

#[async_trait]
impl Resource for TenantResource {
    type State<'a> = TenantState<'a>;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(Self::resource_schema())
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::State<'a>) -> Option<()> {
        if let Some(n) = known(&config.name) {
            if let Err(e) = hangar_tenants::TenantName::parse(n) {
                diags.error(
                    format!("name: {e}"),
                    "A tenant's name is an RFC 1123 label: lowercase letters, digits and `-`.",
                    AttributePath::new("name"),
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
        let name = known(&state.name).unwrap_or_default().to_owned();
        match client.get_tenant(&name).await {
            Ok(t) => Some((TenantState::from_api(&t), private)),
            Err(e) if is_not_found(&e) => None,
            Err(e) => {
                diags.root_error(format!("Reading tenant {name}"), e.to_string());
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
        s.id = s.name.clone();
        s.tenant_id = Value::Unknown;
        s.created_at = Value::Unknown;
        Some((s, Value::Null))
    }

    async fn plan_update<'a>(
        &self,
        _diags: &mut Diagnostics,
        prior: Self::State<'a>,
        proposed: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>, Vec<AttributePath>)> {
        let mut replace = Vec::new();
        if prior.name != proposed.name {
            replace.push(AttributePath::new("name"));
        }
        if prior.display_name != proposed.display_name {
            replace.push(AttributePath::new("display_name"));
        }
        let mut s = proposed;
        if !replace.is_empty() {
            s.id = s.name.clone();
            s.tenant_id = Value::Unknown;
            s.created_at = Value::Unknown;
        }
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
        let req = CreateTenant {
            name: known(&planned.name).unwrap_or_default().to_owned(),
            display_name: known(&planned.display_name).map(str::to_owned),
        };
        match client.create_tenant(&req).await {
            Ok(t) => Some((TenantState::from_api(&t), private)),
            Err(e) => {
                api_error(diags, &format!("Creating tenant {}", req.name), &e, &[]);
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
        // Every attribute a configuration sets replaces the tenant: nothing to send.
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
        let name = known(&prior.name).unwrap_or_default().to_owned();
        match client.delete_tenant(&name).await {
            Ok(()) => Some(()),
            Err(e) if is_not_found(&e) => Some(()),
            Err(e) => {
                diags.root_error(format!("Deleting tenant {name}"), e.to_string());
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
        match client.get_tenant(&id).await {
            Ok(t) => Some((TenantState::from_api(&t), Value::Null)),
            Err(e) => {
                diags.root_error(format!("Importing tenant {id}"), e.to_string());
                None
            }
        }
    }
}
