//! The Airflow CLI commands a tenant may run in its own environment through Hangar, the role
//! MWAA's CLI token plays: read-mostly commands for debugging (list DAGs and import errors, test
//! a DAG or a task, read task states, read a setting), never ones that change the metadata
//! database wholesale (`db reset`), manage users, or read the platform's secrets.
//!
//! A command arrives as a list of arguments and is run without a shell, so `;` or `&&` are only
//! characters of an argument, which then is no known command. Everything not on the list is
//! refused, naming the argument (`args[1]`). Paths may only be relative and stay inside the
//! environment's DAG folder (the command runs there).

use crate::error::FieldErrors;
use crate::spec::is_platform_owned;

/// Most arguments a command may have.
pub const MAX_ARGS: usize = 32;
/// Longest argument, in bytes.
pub const MAX_ARG_LEN: usize = 1024;

/// The allowed commands: `(group, subcommands)`; an empty list is a command without
/// subcommand (`version`).
const ALLOWED: &[(&str, &[&str])] = &[
    (
        "dags",
        &[
            "details",
            "list",
            "list-import-errors",
            "list-jobs",
            "list-runs",
            "next-execution",
            "pause",
            "report",
            "state",
            "test",
            "trigger",
            "unpause",
        ],
    ),
    (
        "tasks",
        &[
            "failed-deps",
            "list",
            "render",
            "state",
            "states-for-dag-run",
            "test",
        ],
    ),
    ("config", &["get-value"]),
    ("connections", &["list"]),
    ("variables", &["get", "list"]),
    ("pools", &["get", "list"]),
    ("providers", &["list"]),
    ("jobs", &["check"]),
    ("version", &[]),
    ("cheat-sheet", &[]),
];

/// Options that write files or read the environment's variables, refused wherever they appear.
const REFUSED_OPTIONS: &[&str] = &["--save", "--imgcat", "--output-file", "--env-vars"];

/// A command that passed the allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AirflowCommand {
    /// The arguments after `airflow`.
    pub args: Vec<String>,
    /// Whether the output lists connections, whose passwords and extras the runner must mask.
    pub masks_connections: bool,
}

/// Checks `args` (what follows `airflow`) against the allow-list.
pub fn check(args: Vec<String>) -> Result<AirflowCommand, FieldErrors> {
    let mut errors = FieldErrors::default();
    if args.is_empty() {
        errors.push(
            "args",
            "must name a command, for example [\"dags\", \"list\"]",
        );
        return Err(errors);
    }
    if args.len() > MAX_ARGS {
        errors.push("args", format!("must have at most {MAX_ARGS} arguments"));
        return Err(errors);
    }
    let group = args[0].as_str();
    let Some((_, subs)) = ALLOWED.iter().find(|(g, _)| *g == group) else {
        errors.push(
            "args[0]",
            format!(
                "{group:?} is not an allowed command (allowed: {})",
                allowed_list()
            ),
        );
        return Err(errors);
    };
    let mut first_free = 1;
    if !subs.is_empty() {
        match args.get(1) {
            Some(sub) if subs.contains(&sub.as_str()) => first_free = 2,
            Some(sub) => {
                errors.push(
                    "args[1]",
                    format!(
                        "{group} {sub:?} is not allowed (allowed: {})",
                        subs.iter()
                            .map(|s| format!("{group} {s}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                return Err(errors);
            }
            None => {
                errors.push(
                    "args[1]",
                    format!("{group} needs one of: {}", subs.join(", ")),
                );
                return Err(errors);
            }
        }
    }
    for (i, a) in args.iter().enumerate().skip(first_free) {
        if let Some(why) = refused_argument(a) {
            errors.push(format!("args[{i}]"), why);
        }
    }
    if group == "config" {
        // `config get-value SECTION KEY`: not the settings the platform owns (secrets, URLs).
        if let (Some(section), Some(key)) = (args.get(2), args.get(3)) {
            let full = format!("{}.{}", section.to_lowercase(), key.to_lowercase());
            if is_platform_owned(&full) {
                errors.push(
                    "args[3]",
                    format!("{full} is set by the platform and not readable"),
                );
            }
        }
    }
    let masks_connections = group == "connections";
    let args = if masks_connections {
        // Always JSON, so the runner can mask every password and extra.
        if args.len() > 2 {
            errors.push(
                "args[2]",
                "connections list takes no options: it is listed as JSON with secrets masked",
            );
        }
        vec![
            "connections".to_owned(),
            "list".to_owned(),
            "--output".to_owned(),
            "json".to_owned(),
        ]
    } else {
        args
    };
    errors.into_result(AirflowCommand {
        args,
        masks_connections,
    })
}

fn allowed_list() -> String {
    ALLOWED
        .iter()
        .map(|(g, subs)| {
            if subs.is_empty() {
                (*g).to_owned()
            } else {
                format!("{g} {{{}}}", subs.join("|"))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why an argument after the command is refused, if it is.
fn refused_argument(a: &str) -> Option<String> {
    if a.len() > MAX_ARG_LEN {
        return Some(format!("must be at most {MAX_ARG_LEN} bytes"));
    }
    if a.chars().any(|c| c.is_control()) {
        return Some("must not contain control characters".to_owned());
    }
    let option = a.split('=').next().unwrap_or(a);
    if REFUSED_OPTIONS.contains(&option) {
        return Some(format!(
            "{option} is not allowed (it writes files or reads the environment's variables)"
        ));
    }
    // A path: only relative, inside the DAG folder the command runs in.
    let value = a.split_once('=').map_or(a, |(_, v)| v);
    if value.starts_with('/') || value.starts_with('~') {
        return Some(
            "must not be an absolute path: paths are relative to the DAG folder".to_owned(),
        );
    }
    if value.split(['/', '\\']).any(|seg| seg == "..") {
        return Some("must not leave the DAG folder (`..`)".to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use rstest::rstest;

    fn v(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[rstest]
    #[case::dags_list(&["dags", "list"])]
    #[case::dags_list_json(&["dags", "list", "--output", "json"])]
    #[case::import_errors(&["dags", "list-import-errors"])]
    #[case::dags_test(&["dags", "test", "etl", "2024-01-01"])]
    #[case::tasks_test(&["tasks", "test", "etl", "extract", "2024-01-01"])]
    #[case::states(&["tasks", "states-for-dag-run", "etl", "manual__2024"])]
    #[case::config_value(&["config", "get-value", "core", "parallelism"])]
    #[case::version(&["version"])]
    #[case::relative_subdir(&["dags", "list", "--subdir", "team/etl.py"])]
    #[case::conf_json(&["dags", "trigger", "etl", "--conf", "{\"a\": 1}"])]
    fn allowed(#[case] args: &[&str]) {
        let c = check(v(args)).unwrap();
        assert_eq!(c.args, v(args));
        assert!(!c.masks_connections);
    }

    #[test]
    fn connections_are_always_listed_as_json_to_be_masked() {
        let c = check(v(&["connections", "list"])).unwrap();
        assert!(c.masks_connections);
        assert_eq!(c.args, v(&["connections", "list", "--output", "json"]));
        let e = check(v(&["connections", "list", "-o", "plain"])).unwrap_err();
        assert_eq!(e.0[0].field, "args[2]");
    }

    #[rstest]
    #[case::nothing(&[], "args")]
    #[case::db_reset(&["db", "reset"], "args[0]")]
    #[case::users(&["users", "create"], "args[0]")]
    #[case::shell_in_one_argument(&["dags list; rm -rf /"], "args[0]")]
    #[case::shell_split(&["dags", "list;", "rm", "-rf", "/"], "args[1]")]
    #[case::shell_after_a_command(&["dags", "list", ";", "rm", "-rf", "/"], "args[5]")]
    #[case::unknown_sub(&["dags", "delete", "etl"], "args[1]")]
    #[case::missing_sub(&["dags"], "args[1]")]
    #[case::absolute_subdir(&["dags", "list", "--subdir", "/etc"], "args[3]")]
    #[case::absolute_subdir_inline(&["dags", "list", "--subdir=/etc"], "args[2]")]
    #[case::escaping_subdir(&["dags", "list", "-S", "../../other-env/dags"], "args[3]")]
    #[case::home(&["dags", "list", "-S", "~/x"], "args[3]")]
    #[case::writes_a_file(&["dags", "list", "--save", "x.png"], "args[2]")]
    #[case::env_vars(&["tasks", "test", "etl", "t", "--env-vars", "{}"], "args[4]")]
    #[case::newline(&["dags", "list", "a\nb"], "args[2]")]
    #[case::secret_setting(&["config", "get-value", "database", "sql_alchemy_conn"], "args[3]")]
    #[case::fernet_key(&["config", "get-value", "core", "FERNET_KEY"], "args[3]")]
    fn refused(#[case] args: &[&str], #[case] field: &str) {
        let e = check(v(args)).unwrap_err();
        assert!(
            e.0.iter().any(|x| x.field == field),
            "{args:?}: {e}, wanted {field}"
        );
    }

    #[test]
    fn too_many_or_too_long_arguments_are_refused() {
        let many = vec!["x".to_owned(); MAX_ARGS + 1];
        assert_eq!(check(many).unwrap_err().0[0].field, "args");
        let long = v(&["dags", "list", &"a".repeat(MAX_ARG_LEN + 1)]);
        assert_eq!(check(long).unwrap_err().0[0].field, "args[2]");
    }

    #[test]
    fn an_unknown_command_lists_the_allowed_ones() {
        let e = check(v(&["db", "reset"])).unwrap_err();
        assert!(e.0[0].message.contains("dags {details|list"), "{e}");
    }
}
