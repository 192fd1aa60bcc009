//! The portal's tera templates, compiled into the binary, and the context every page shares
//! (who is signed in, what they may do, the session's CSRF token).

use std::sync::LazyLock;

use hangar_tenants::api::Role;
use tera::{Context, Tera};

use super::error::PortalError;
use super::session::Session;
use crate::auth::Principal;

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_str!(concat!("../../templates/portal/", $name)))),*]
    };
}

static TEMPLATES: LazyLock<Result<Tera, tera::Error>> = LazyLock::new(|| {
    let mut t = Tera::default();
    t.add_raw_templates(templates!(
        "base.html",
        "macros.html",
        "login.html",
        "continue.html",
        "error.html",
        "tenant.html",
        "environment_new.html",
        "environment.html",
        "environment_delete.html",
        "dags.html",
        "logs.html",
        "cli.html",
        "tokens.html",
        "audit.html",
        "admin.html",
    ))?;
    Ok(t)
});

/// Renders a page; a template error is logged and becomes a 500 page without details.
pub(crate) fn render(name: &str, ctx: &Context) -> Result<String, PortalError> {
    let tera = TEMPLATES
        .as_ref()
        .map_err(|e| PortalError::template(name, e))?;
    tera.render(name, ctx)
        .map_err(|e| PortalError::template(name, &e))
}

/// What a page may show to its viewer.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct Rights {
    /// Creates, changes and deletes environments, uploads DAGs, runs CLI commands.
    pub edit: bool,
    /// Manages the tenant's tokens and reads its audit log.
    pub admin: bool,
    /// The platform admin (tenants, cells).
    pub platform: bool,
}

impl Rights {
    pub fn of(principal: &Principal) -> Self {
        match principal {
            Principal::PlatformAdmin => Self {
                edit: true,
                admin: true,
                platform: true,
            },
            Principal::Tenant { role, .. } => Self {
                edit: *role >= Role::Editor,
                admin: *role >= Role::Admin,
                platform: false,
            },
            Principal::Cell { .. } => Self {
                edit: false,
                admin: false,
                platform: false,
            },
        }
    }
}

/// The context of every signed-in page: the viewer, their rights, the session's CSRF token,
/// and the tenant the page is about (for the navigation).
pub(crate) fn page_context(session: &Session, tenant: Option<&str>, title: &str) -> Context {
    let mut ctx = Context::new();
    let (who, role) = match &session.actor.principal {
        Principal::PlatformAdmin => ("platform admin".to_owned(), "admin"),
        Principal::Tenant { tenant, role, .. } => {
            (format!("{tenant} ({})", role.as_str()), role.as_str())
        }
        Principal::Cell { name, .. } => (format!("cell {name}"), "cell"),
    };
    ctx.insert("who", &who);
    ctx.insert("role", role);
    ctx.insert("rights", &Rights::of(&session.actor.principal));
    ctx.insert("csrf_token", &session.csrf_token);
    ctx.insert("tenant", &tenant);
    ctx.insert("title", title);
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::panic)]
    fn every_template_compiles() {
        if let Err(e) = TEMPLATES.as_ref() {
            panic!("{e:?}");
        }
    }
}
