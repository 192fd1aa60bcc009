//! The Airflow CLI commands a tenant may run in its own environment through Hangar, the role
//! MWAA's CLI token plays: read-mostly commands for debugging (list DAGs and import errors, test
//! a DAG or a task, read task states, read a setting), never ones that change the metadata
//! database wholesale (`db reset`), manage users, or read the platform's secrets.
//!
//! A command arrives as a list of arguments and is run without a shell, so `;` or `&&` are only
//! characters of an argument, which then is no known command. Both the subcommand and its
//! options are allow-listed ([`commands`]); everything else is refused, naming the argument
//! (`args[1]`). Paths may only be relative and stay inside the environment's DAG folder (the
//! command runs there).
//!
//! The arguments are read the way Airflow's argparse parser reads them, and anything it could
//! read differently from this check is refused: argparse expands an unambiguous prefix of a long
//! option (`--env-v` is `--env-vars`), takes `-S/etc` as `-S /etc` and `-vS/x` as `-v -S /x`,
//! and `--opt=value` as `--opt value` (<https://docs.python.org/3/library/argparse.html#prefix-matching>,
//! `#option-value-syntax`). So an option must be written exactly as Airflow names it, a short
//! option stands alone (`-o json`, never `-ojson`), and the value of `--opt=value` is checked
//! like any other value. `--` is refused: no allowed command needs an argument starting with
//! `-`, and so this check need not follow how argparse hands `--` on through its nested
//! subcommand parsers.

mod commands;

use crate::error::FieldErrors;
use crate::spec::is_platform_owned;
use commands::{Command, Opt, COMMANDS};

/// Most arguments a command may have.
pub const MAX_ARGS: usize = 32;
/// Longest argument, in bytes.
pub const MAX_ARG_LEN: usize = 1024;

/// A command that passed the allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AirflowCommand {
    /// The arguments after `airflow`.
    pub args: Vec<String>,
    /// Whether the output lists connections, whose passwords and extras the runner must mask.
    pub masks_connections: bool,
}

/// Checks `args` (what follows `airflow`) against the allow-list of commands and of their
/// options; every refusal names its argument (`args[3]`).
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
    let command = match find_command(&args) {
        Ok(c) => c,
        Err((field, message)) => {
            errors.push(field, message);
            return Err(errors);
        }
    };
    let first = if command.sub.is_some() { 2 } else { 1 };
    let masks_connections = command.group == "connections";
    if masks_connections {
        // Always JSON, so the runner can mask every password and extra.
        if args.len() > first {
            errors.push(
                format!("args[{first}]"),
                "connections list takes no options: it is listed as JSON with secrets masked",
            );
        }
        return errors.into_result(AirflowCommand {
            args: ["connections", "list", "--output", "json"]
                .map(String::from)
                .to_vec(),
            masks_connections,
        });
    }
    let positionals = check_arguments(command, &args, first, &mut errors);
    if command.group == "config" {
        // `config get-value SECTION KEY`: not the settings the platform owns (secrets, URLs).
        if let [(_, section), (i, key), ..] = positionals.as_slice() {
            let full = format!("{}.{}", section.to_lowercase(), key.to_lowercase());
            if is_platform_owned(&full) {
                errors.push(
                    format!("args[{i}]"),
                    format!("{full} is set by the platform and not readable"),
                );
            }
        }
    }
    errors.into_result(AirflowCommand {
        args,
        masks_connections,
    })
}

/// The allowed command `args` starts with, or the field and message refusing it.
fn find_command(args: &[String]) -> Result<&'static Command, (&'static str, String)> {
    let group = args[0].as_str();
    let subs: Vec<&'static Command> = COMMANDS.iter().filter(|c| c.group == group).collect();
    let Some(first) = subs.first() else {
        return Err((
            "args[0]",
            format!(
                "{group:?} is not an allowed command (allowed: {})",
                allowed_list()
            ),
        ));
    };
    if first.sub.is_none() {
        return Ok(first);
    }
    let names: Vec<&str> = subs.iter().filter_map(|c| c.sub).collect();
    match args.get(1) {
        Some(sub) => subs
            .iter()
            .find(|c| c.sub == Some(sub.as_str()))
            .copied()
            .ok_or_else(|| {
                (
                    "args[1]",
                    format!(
                        "{group} {sub:?} is not allowed (allowed: {})",
                        names
                            .iter()
                            .map(|s| format!("{group} {s}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            }),
        None => Err((
            "args[1]",
            format!("{group} needs one of: {}", names.join(", ")),
        )),
    }
}

/// `dags {details|list|…}, …, version`.
fn allowed_list() -> String {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for c in COMMANDS {
        match groups.last_mut() {
            Some((g, subs)) if *g == c.group => subs.extend(c.sub),
            _ => groups.push((c.group, c.sub.into_iter().collect())),
        }
    }
    groups
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

/// Checks the arguments from `args[first]` on against `command`'s options, the way argparse
/// would read them, and answers the positional arguments with their index.
fn check_arguments<'a>(
    command: &Command,
    args: &'a [String],
    first: usize,
    errors: &mut FieldErrors,
) -> Vec<(usize, &'a str)> {
    let mut positionals = Vec::new();
    let mut i = first;
    while i < args.len() {
        let a = args[i].as_str();
        let field = format!("args[{i}]");
        i += 1;
        if let Some(why) = refused_text(a) {
            errors.push(field, why);
            continue;
        }
        if !is_option(a) {
            if let Some(why) = refused_path(a) {
                errors.push(field, why);
            }
            positionals.push((i - 1, a));
            continue;
        }
        let (opt, inline) = match option(command, a) {
            Ok(found) => found,
            Err(why) => {
                errors.push(field, why);
                continue;
            }
        };
        match (opt.takes_value, inline) {
            (false, None) => {}
            (false, Some(_)) => {
                errors.push(field, format!("option {} takes no value (`{a}`)", opt.long))
            }
            (true, Some(value)) => {
                if let Some(why) = refused_path(value) {
                    errors.push(field, format!("the value of {}: {why}", opt.long));
                }
            }
            (true, None) => {
                let Some(value) = args.get(i) else {
                    errors.push(field, format!("option {a} needs a value"));
                    continue;
                };
                let field = format!("args[{i}]");
                i += 1;
                if let Some(why) = refused_text(value)
                    .or_else(|| {
                        is_option(value).then(|| {
                            "must not start with '-': argparse would take it for an option"
                                .to_owned()
                        })
                    })
                    .or_else(|| refused_path(value))
                {
                    errors.push(field, format!("the value of {a}: {why}"));
                }
            }
        }
    }
    positionals
}

/// The option `token` (`--output`, `--output=json`, `-o`) names, with its value when written
/// `--opt=value`, or why it is refused. Only exact names count: argparse would expand a prefix
/// or split a glued short option, and this check does not try to guess how.
fn option<'a>(
    command: &Command,
    token: &'a str,
) -> Result<(&'static Opt, Option<&'a str>), String> {
    let name = command.name();
    if token == "--" {
        return Err(format!(
            "`--` is not accepted by `{name}`: no allowed command takes an argument starting with '-'"
        ));
    }
    if let Some(long) = token.strip_prefix("--") {
        let (written, inline) = match long.split_once('=') {
            Some((n, v)) => (&token[..n.len() + 2], Some(v)),
            None => (token, None),
        };
        if let Some(opt) = command.option(written) {
            return Ok((opt, inline));
        }
        let expands_to: Vec<&str> = if written.len() > 2 {
            command.longs().filter(|l| l.starts_with(written)).collect()
        } else {
            Vec::new()
        };
        return Err(if expands_to.is_empty() {
            format!(
                "option {written} is not accepted by `{name}` (accepted: {})",
                command.accepted()
            )
        } else {
            format!(
                "option {written} is not accepted by `{name}`: write options in full ({})",
                expands_to.join(", ")
            )
        });
    }
    if token.chars().count() > 2 {
        return Err(format!(
            "option {token} is not accepted by `{name}`: a short option stands alone, with its \
             value in the next argument (`-o json`, not `-ojson`)"
        ));
    }
    command.option(token).map(|opt| (opt, None)).ok_or_else(|| {
        format!(
            "option {token} is not accepted by `{name}` (accepted: {})",
            command.accepted()
        )
    })
}

/// Whether argparse could take `a` for an option: it starts with `-` and is neither `-` alone
/// nor a negative number (none of Airflow's options looks like one, so argparse reads
/// `-1` as a value: `ArgumentParser._negative_number_matcher`).
fn is_option(a: &str) -> bool {
    a.starts_with('-') && a != "-" && !is_negative_number(a)
}

/// `-1`, `-0.5`, `-.5`, in ASCII digits (argparse's `^-\d+$|^-\d*\.\d+$` takes these and more).
fn is_negative_number(a: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match a.strip_prefix('-') {
        Some(n) => match n.split_once('.') {
            Some((int, frac)) => (int.is_empty() || digits(int)) && digits(frac),
            None => digits(n),
        },
        None => false,
    }
}

/// Why an argument is refused whatever its place, if it is.
fn refused_text(a: &str) -> Option<String> {
    if a.len() > MAX_ARG_LEN {
        return Some(format!("must be at most {MAX_ARG_LEN} bytes"));
    }
    if a.chars().any(|c| c.is_control()) {
        return Some("must not contain control characters".to_owned());
    }
    None
}

/// Why a positional argument or an option's value is refused as a path, if it is: paths are
/// only relative, inside the DAG folder the command runs in.
fn refused_path(value: &str) -> Option<String> {
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
    #[case::dags_list_json(&["dags", "list", "-o", "json"])]
    #[case::dags_list_json_long(&["dags", "list", "--output", "json"])]
    #[case::dags_list_json_inline(&["dags", "list", "--output=json"])]
    #[case::dags_list_columns(&["dags", "list", "-v", "--columns", "dag_id,fileloc", "-o", "plain"])]
    #[case::dags_list_bundle(&["dags", "list", "-B", "dags-folder", "--local"])]
    #[case::import_errors(&["dags", "list-import-errors", "--output", "json"])]
    #[case::failed_runs(&["dags", "list-runs", "my_dag", "--state", "failed"])]
    #[case::runs_between(&["dags", "list-runs", "etl", "-s", "2024-01-01", "-e", "2024-02-01", "--no-backfill"])]
    #[case::next_runs(&["dags", "next-execution", "etl", "-n", "3", "--table"])]
    #[case::pause(&["dags", "pause", "etl", "--yes"])]
    #[case::dags_test(&["dags", "test", "etl", "2024-01-01"])]
    #[case::dags_test_file(&["dags", "test", "etl", "-f", "team/etl.py", "--show-dagrun"])]
    #[case::dags_test_file_inline(&["dags", "test", "etl", "--dagfile-path=team/etl.py"])]
    #[case::trigger_conf(&["dags", "trigger", "my_dag", "--conf", "{}"])]
    #[case::trigger_all(&["dags", "trigger", "etl", "-c", "{\"a\": 1}", "-r", "manual_1", "--no-replace-microseconds", "-o", "json"])]
    #[case::tasks_test(&["tasks", "test", "my_dag", "my_task", "2024-01-01"])]
    #[case::tasks_test_params(&["tasks", "test", "etl", "extract", "-t", "{\"x\": 1}", "--map-index", "-1"])]
    #[case::task_state(&["tasks", "state", "etl", "extract", "manual__2024", "--map-index", "0"])]
    #[case::states(&["tasks", "states-for-dag-run", "etl", "manual__2024", "-o", "json"])]
    #[case::config_value(&["config", "get-value", "core", "parallelism"])]
    #[case::variable(&["variables", "get", "key", "-d", "fallback", "-j"])]
    #[case::variables(&["variables", "list", "--show-values", "--hide-sensitive"])]
    #[case::jobs(&["jobs", "check", "--job-type", "SchedulerJob", "--local", "--limit", "1"])]
    #[case::version(&["version"])]
    #[case::cheat_sheet(&["cheat-sheet", "-v"])]
    #[case::help(&["dags", "list", "--help"])]
    #[case::short_help(&["version", "-h"])]
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

    /// Each refusal names its argument and, in its message, what is wrong with it.
    #[rstest]
    #[case::nothing(&[], "args", "must name a command")]
    #[case::db_reset(&["db", "reset"], "args[0]", "\"db\"")]
    #[case::users(&["users", "create"], "args[0]", "\"users\"")]
    #[case::shell_in_one_argument(&["dags list; rm -rf /"], "args[0]", "rm -rf")]
    #[case::shell_split(&["dags", "list;", "rm", "-rf", "/"], "args[1]", "list;")]
    #[case::shell_after_a_command(&["dags", "list", ";", "rm", "-rf", "/"], "args[4]", "-rf")]
    #[case::shell_path_after_a_command(&["dags", "list", ";", "rm", "-rf", "/"], "args[5]", "absolute")]
    #[case::unknown_sub(&["dags", "delete", "etl"], "args[1]", "\"delete\"")]
    #[case::missing_sub(&["dags"], "args[1]", "needs one of")]
    // Prefixes argparse would expand: of a refused option, and of an allowed one.
    #[case::env_vars_prefix(&["dags", "test", "my_dag", "--env-v", "{}"], "args[3]", "option --env-v is not accepted by `dags test`")]
    #[case::env_vars_prefix_tasks(&["tasks", "test", "etl", "t", "--env-v", "{}"], "args[4]", "--env-v")]
    #[case::output_prefix(&["dags", "list", "--out", "json"], "args[2]", "option --out is not accepted by `dags list`: write options in full (--output)")]
    #[case::output_prefix_inline(&["dags", "list", "--out=json"], "args[2]", "--out")]
    #[case::verbose_prefix(&["dags", "list", "--verb"], "args[2]", "--verb")]
    #[case::save_dagrun_prefix(&["dags", "test", "etl", "--save-dag=x.png"], "args[3]", "--save-dag")]
    // Glued short options argparse would split.
    #[case::glued_subdir(&["dags", "list", "-S/etc"], "args[2]", "option -S/etc is not accepted by `dags list`: a short option stands alone")]
    #[case::glued_output(&["dags", "list", "-ojson"], "args[2]", "`-o json`, not `-ojson`")]
    #[case::glued_flags(&["dags", "list", "-vS/x"], "args[2]", "-vS/x")]
    #[case::glued_equals(&["dags", "list", "-o=json"], "args[2]", "-o=json")]
    #[case::glued_file(&["dags", "test", "etl", "-f/etc/passwd"], "args[3]", "-f/etc/passwd")]
    // `--opt=value`: the value is checked too.
    #[case::inline_absolute(&["dags", "test", "etl", "--dagfile-path=/etc/passwd"], "args[3]", "the value of --dagfile-path: must not be an absolute path")]
    #[case::inline_escaping(&["dags", "test", "etl", "--dagfile-path=../other/x.py"], "args[3]", "the value of --dagfile-path: must not leave the DAG folder")]
    #[case::inline_flag(&["dags", "list", "--verbose=yes"], "args[2]", "option --verbose takes no value")]
    #[case::inline_refused(&["dags", "test", "etl", "--save-dagrun=x.png"], "args[3]", "option --save-dagrun is not accepted")]
    // Paths as option values and as positional arguments.
    #[case::absolute_file(&["dags", "test", "etl", "-f", "/etc/passwd"], "args[4]", "the value of -f: must not be an absolute path")]
    #[case::escaping_file(&["dags", "test", "etl", "--dagfile-path", "../../other-env/dags/x.py"], "args[4]", "the value of --dagfile-path: must not leave")]
    #[case::home_file(&["dags", "test", "etl", "-f", "~/x.py"], "args[4]", "absolute")]
    #[case::absolute_positional(&["dags", "state", "/etc/passwd", "x"], "args[2]", "absolute")]
    #[case::escaping_positional(&["tasks", "test", "etl", "../x"], "args[3]", "`..`")]
    // Options the subcommand does not accept.
    #[case::writes_a_file(&["dags", "test", "etl", "--save-dagrun", "x.png"], "args[3]", "option --save-dagrun is not accepted by `dags test` (accepted: -B/--bundle-name")]
    #[case::imgcat(&["dags", "test", "etl", "--imgcat-dagrun"], "args[3]", "--imgcat-dagrun")]
    #[case::executor(&["dags", "test", "etl", "--use-executor"], "args[3]", "--use-executor")]
    #[case::env_vars(&["tasks", "test", "etl", "t", "--env-vars", "{}"], "args[4]", "option --env-vars is not accepted by `tasks test`")]
    #[case::post_mortem(&["tasks", "test", "etl", "t", "-m"], "args[4]", "option -m is not accepted")]
    #[case::airflow_2_subdir(&["dags", "list", "--subdir", "team"], "args[2]", "--subdir")]
    #[case::airflow_2_short_subdir(&["dags", "list", "-S", "team"], "args[2]", "-S")]
    #[case::other_commands_option(&["dags", "state", "etl", "x", "-o", "json"], "args[4]", "option -o is not accepted by `dags state`")]
    #[case::no_options(&["version", "-v"], "args[1]", "option -v is not accepted by `version`")]
    // Values argparse would not take as values.
    #[case::missing_value(&["dags", "list", "-o"], "args[2]", "option -o needs a value")]
    #[case::option_as_value(&["dags", "list", "-o", "-v"], "args[3]", "the value of -o: must not start with '-'")]
    #[case::refused_option_as_value(&["dags", "test", "etl", "--conf", "--env-vars"], "args[4]", "the value of --conf")]
    #[case::double_dash(&["dags", "test", "etl", "--", "--env-vars", "{}"], "args[3]", "`--` is not accepted by `dags test`")]
    #[case::newline(&["dags", "list", "a\nb"], "args[2]", "control characters")]
    #[case::secret_setting(&["config", "get-value", "database", "sql_alchemy_conn"], "args[3]", "database.sql_alchemy_conn")]
    #[case::fernet_key(&["config", "get-value", "core", "FERNET_KEY"], "args[3]", "core.fernet_key")]
    #[case::secret_setting_after_an_option(&["config", "get-value", "-v", "database", "sql_alchemy_conn"], "args[4]", "database.sql_alchemy_conn")]
    #[case::connections_options(&["connections", "list", "--show-values"], "args[2]", "takes no options")]
    fn refused(#[case] args: &[&str], #[case] field: &str, #[case] message: &str) {
        let e = check(v(args)).unwrap_err();
        assert!(
            e.0.iter()
                .any(|x| x.field == field && x.message.contains(message)),
            "{args:?}: {e}, wanted {field}: …{message}…"
        );
    }

    #[rstest]
    #[case("-1", true)]
    #[case("-0.5", true)]
    #[case("-.5", true)]
    #[case("-", false)]
    #[case("-1a", false)]
    #[case("-5.", false)]
    #[case("1", false)]
    fn negative_numbers_are_values_for_argparse(#[case] a: &str, #[case] negative: bool) {
        assert_eq!(is_negative_number(a), negative);
        assert_eq!(is_option(a), !negative && a.starts_with('-') && a != "-");
    }

    #[test]
    fn too_many_or_too_long_arguments_are_refused() {
        let many = vec!["x".to_owned(); MAX_ARGS + 1];
        assert_eq!(check(many).unwrap_err().0[0].field, "args");
        let long = v(&["dags", "list", &"a".repeat(MAX_ARG_LEN + 1)]);
        assert_eq!(check(long).unwrap_err().0[0].field, "args[2]");
        let long_value = v(&["dags", "list", "-o", &"a".repeat(MAX_ARG_LEN + 1)]);
        assert_eq!(check(long_value).unwrap_err().0[0].field, "args[3]");
    }

    #[test]
    fn an_unknown_command_lists_the_allowed_ones() {
        let e = check(v(&["db", "reset"])).unwrap_err();
        assert!(e.0[0].message.contains("dags {details|list"), "{e}");
        assert!(e.0[0].message.ends_with("version, cheat-sheet)"), "{e}");
    }
}
