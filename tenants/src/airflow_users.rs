//! The platform's own users in each environment's Airflow (simple auth manager): one per Airflow
//! role a Hangar role maps to, so that Airflow's own role check applies to what a caller does
//! through the control plane's proxy (a Hangar viewer's write is refused by Airflow itself).
//! Their passwords are derived from the environment's admin password, so no secret is added and
//! environments created before the mapping get the users at their next apply. Tenants never see
//! these passwords.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::api::{EnvironmentSecrets, Role};

/// An Airflow role (simple auth manager) the platform logs in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AirflowRole {
    /// Reads everything Airflow lets a viewer read; changes nothing.
    Viewer,
    /// Also triggers, pauses and clears DAGs and manages connections, pools and variables.
    Op,
    /// Everything.
    Admin,
}

impl AirflowRole {
    /// Every role the platform has a user for, weakest first.
    pub const ALL: [AirflowRole; 3] = [AirflowRole::Viewer, AirflowRole::Op, AirflowRole::Admin];

    /// The Airflow role a Hangar role acts with: viewer → viewer, editor → op, admin → admin.
    pub fn of(role: Role) -> Self {
        match role {
            Role::Viewer => AirflowRole::Viewer,
            Role::Editor => AirflowRole::Op,
            Role::Admin => AirflowRole::Admin,
        }
    }

    /// The role's name in Airflow's `simple_auth_manager_users`.
    pub fn as_str(self) -> &'static str {
        match self {
            AirflowRole::Viewer => "viewer",
            AirflowRole::Op => "op",
            AirflowRole::Admin => "admin",
        }
    }

    /// The platform's user with this role.
    pub fn user(self) -> &'static str {
        match self {
            AirflowRole::Viewer => "hangar-viewer",
            AirflowRole::Op => "hangar-op",
            AirflowRole::Admin => ADMIN_USER,
        }
    }

    /// The user's password: the environment's admin password for the admin (as it always was),
    /// HMAC-SHA256 of the role's name under the admin password (hex) for the others.
    pub fn password(self, secrets: &EnvironmentSecrets) -> String {
        if self == AirflowRole::Admin {
            return secrets.admin_password.clone();
        }
        // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secrets.admin_password.as_bytes()) else {
            return String::new();
        };
        mac.update(self.as_str().as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The platform's internal Airflow admin user.
pub const ADMIN_USER: &str = "hangar-admin";

/// Airflow's `[core] simple_auth_manager_users`: every platform user with its role.
pub fn simple_auth_manager_users() -> String {
    AirflowRole::ALL
        .iter()
        .map(|r| format!("{}:{}", r.user(), r.as_str()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The simple auth manager's passwords file: every platform user's password, as JSON.
pub fn passwords_file(secrets: &EnvironmentSecrets) -> String {
    let users: serde_json::Map<String, serde_json::Value> = AirflowRole::ALL
        .iter()
        .map(|r| (r.user().to_owned(), r.password(secrets).into()))
        .collect();
    format!("{}\n", serde_json::Value::Object(users))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn secrets(admin_password: &str) -> EnvironmentSecrets {
        EnvironmentSecrets {
            fernet_key: "FERNET".into(),
            jwt_secret: "JWT".into(),
            api_secret_key: "API".into(),
            db_password: "DBPW".into(),
            broker_password: "BRPW".into(),
            admin_password: admin_password.into(),
        }
    }

    #[test]
    fn hangar_roles_map_to_airflow_roles() {
        assert_eq!(AirflowRole::of(Role::Viewer), AirflowRole::Viewer);
        assert_eq!(AirflowRole::of(Role::Editor), AirflowRole::Op);
        assert_eq!(AirflowRole::of(Role::Admin), AirflowRole::Admin);
        assert_eq!(
            simple_auth_manager_users(),
            "hangar-viewer:viewer,hangar-op:op,hangar-admin:admin"
        );
    }

    #[test]
    fn passwords_are_derived_from_the_admin_password() {
        let s = secrets("ADMINPW");
        assert_eq!(AirflowRole::Admin.password(&s), "ADMINPW");
        // HMAC-SHA256(key "ADMINPW", "viewer"), as `openssl dgst -sha256 -hmac ADMINPW` prints it.
        assert_eq!(
            AirflowRole::Viewer.password(&s),
            "8c421fb7e9e8972105ed76a5b11df2c2873ffc783c847ee261c47b9edbacff0d"
        );
        let viewer = AirflowRole::Viewer.password(&s);
        let op = AirflowRole::Op.password(&s);
        assert_eq!(
            op,
            "467cf9354b2552ff137e23346878282fc9700d3743064254ad96fe065b69659b"
        );
        assert_ne!(viewer, op);
        assert_eq!(viewer, AirflowRole::Viewer.password(&secrets("ADMINPW")));
        assert_ne!(viewer, AirflowRole::Viewer.password(&secrets("OTHER")));
    }

    #[test]
    fn the_passwords_file_lists_every_user() {
        let s = secrets("ADMINPW");
        let file = passwords_file(&s);
        assert!(file.ends_with('\n'));
        let users: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&file).unwrap();
        assert_eq!(
            users.keys().map(String::as_str).collect::<Vec<_>>(),
            ["hangar-admin", "hangar-op", "hangar-viewer"]
        );
        assert_eq!(users["hangar-admin"], "ADMINPW");
        assert_eq!(users["hangar-op"], AirflowRole::Op.password(&s));
        assert_eq!(users["hangar-viewer"], AirflowRole::Viewer.password(&s));
    }
}
