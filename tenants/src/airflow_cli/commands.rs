//! The Airflow CLI subcommands a tenant may run and, for each, exactly the options it may pass:
//! the names Apache Airflow 3.3.2 declares for them (`ARG_*` and `*_COMMANDS` in
//! `airflow/cli/cli_config.py`), less the options that write files (`--save-dagrun`,
//! `--imgcat-dagrun`), set the process's environment variables (`tasks test --env-vars`), open a
//! debugger (`tasks test --post-mortem`) or hand tasks to the environment's executor from the
//! short-lived command (`dags test --use-executor`). An option not written here is refused.

/// One option as Airflow declares it: its short and long names, and whether it takes a value
/// (argparse's `store`, `append`) or is a flag (`store_true`, `store_false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Opt {
    pub short: Option<&'static str>,
    pub long: &'static str,
    pub takes_value: bool,
}

impl Opt {
    const fn flag(short: Option<&'static str>, long: &'static str) -> Self {
        Self {
            short,
            long,
            takes_value: false,
        }
    }

    const fn value(short: Option<&'static str>, long: &'static str) -> Self {
        Self {
            short,
            long,
            takes_value: true,
        }
    }

    /// `-o/--output`, or `--limit` when there is no short name.
    pub fn names(&self) -> String {
        match self.short {
            Some(s) => format!("{s}/{}", self.long),
            None => self.long.to_owned(),
        }
    }
}

/// An allowed command: `group` and `sub` (`dags list`), or a command without subcommand
/// (`version`), with the options it accepts besides [`HELP`].
#[derive(Debug)]
pub(super) struct Command {
    pub group: &'static str,
    pub sub: Option<&'static str>,
    pub options: &'static [Opt],
}

impl Command {
    /// `dags list`, `version`.
    pub fn name(&self) -> String {
        match self.sub {
            Some(sub) => format!("{} {sub}", self.group),
            None => self.group.to_owned(),
        }
    }

    /// The option written exactly `token` (`-o` or `--output`), if this command accepts it.
    pub fn option(&self, token: &str) -> Option<&'static Opt> {
        self.options
            .iter()
            .chain(std::iter::once(&HELP))
            .find(|o| o.long == token || o.short == Some(token))
    }

    /// The long names of the options this command accepts.
    pub fn longs(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.options
            .iter()
            .chain(std::iter::once(&HELP))
            .map(|o| o.long)
    }

    /// Every option this command accepts, for an error message.
    pub fn accepted(&self) -> String {
        self.options
            .iter()
            .chain(std::iter::once(&HELP))
            .map(Opt::names)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// argparse adds it to every subcommand; it prints the usage and exits.
const HELP: Opt = Opt::flag(Some("-h"), "--help");

const VERBOSE: Opt = Opt::flag(Some("-v"), "--verbose");
/// `table`, `json`, `yaml` or `plain`.
const OUTPUT: Opt = Opt::value(Some("-o"), "--output");
/// One of the bundles the environment's configuration names; may be repeated.
const BUNDLE_NAME: Opt = Opt::value(Some("-B"), "--bundle-name");
/// `dags list`, `dags list-import-errors`: parse the DAG folder instead of reading the database.
const PARSE_LOCAL: Opt = Opt::flag(Some("-l"), "--local");
const COLUMNS: Opt = Opt::value(None, "--columns");
const DAG_ID: Opt = Opt::value(Some("-d"), "--dag-id");
const STATE: Opt = Opt::value(None, "--state");
const LIMIT: Opt = Opt::value(None, "--limit");
const NO_BACKFILL: Opt = Opt::flag(None, "--no-backfill");
const START_DATE: Opt = Opt::value(Some("-s"), "--start-date");
const END_DATE: Opt = Opt::value(Some("-e"), "--end-date");
const TABLE: Opt = Opt::flag(None, "--table");
const FIELD: Opt = Opt::value(None, "--field");
const NUM_EXECUTIONS: Opt = Opt::value(Some("-n"), "--num-executions");
const TREAT_DAG_ID_AS_REGEX: Opt = Opt::flag(None, "--treat-dag-id-as-regex");
const YES: Opt = Opt::flag(Some("-y"), "--yes");
/// A path, checked like every value: relative and inside the DAG folder.
const DAGFILE_PATH: Opt = Opt::value(Some("-f"), "--dagfile-path");
const CONF: Opt = Opt::value(Some("-c"), "--conf");
/// Prints the run's diagram (DOT) on stdout.
const SHOW_DAGRUN: Opt = Opt::flag(None, "--show-dagrun");
const MARK_SUCCESS_PATTERN: Opt = Opt::value(None, "--mark-success-pattern");
const RUN_ID: Opt = Opt::value(Some("-r"), "--run-id");
const LOGICAL_DATE: Opt = Opt::value(Some("-l"), "--logical-date");
const NO_REPLACE_MICROSECONDS: Opt = Opt::flag(None, "--no-replace-microseconds");
const MAP_INDEX: Opt = Opt::value(None, "--map-index");
const TASK_PARAMS: Opt = Opt::value(Some("-t"), "--task-params");
const VAR_JSON: Opt = Opt::flag(Some("-j"), "--json");
const VAR_DEFAULT: Opt = Opt::value(Some("-d"), "--default");
const SHOW_VALUES: Opt = Opt::flag(None, "--show-values");
const HIDE_SENSITIVE: Opt = Opt::flag(None, "--hide-sensitive");
const JOB_TYPE: Opt = Opt::value(None, "--job-type");
const HOSTNAME: Opt = Opt::value(None, "--hostname");
const JOB_LOCAL: Opt = Opt::flag(None, "--local");
const JOB_LIMIT: Opt = Opt::value(None, "--limit");
const ALLOW_MULTIPLE: Opt = Opt::flag(None, "--allow-multiple");

const fn sub(group: &'static str, sub: &'static str, options: &'static [Opt]) -> Command {
    Command {
        group,
        sub: Some(sub),
        options,
    }
}

/// The allowed commands, a group's subcommands together and in Airflow's order.
pub(super) const COMMANDS: &[Command] = &[
    sub("dags", "details", &[OUTPUT, VERBOSE]),
    sub(
        "dags",
        "list",
        &[OUTPUT, VERBOSE, COLUMNS, BUNDLE_NAME, PARSE_LOCAL],
    ),
    sub(
        "dags",
        "list-import-errors",
        &[BUNDLE_NAME, OUTPUT, VERBOSE, PARSE_LOCAL],
    ),
    sub(
        "dags",
        "list-jobs",
        &[DAG_ID, STATE, LIMIT, OUTPUT, VERBOSE],
    ),
    sub(
        "dags",
        "list-runs",
        &[NO_BACKFILL, STATE, OUTPUT, VERBOSE, START_DATE, END_DATE],
    ),
    sub(
        "dags",
        "next-execution",
        &[TABLE, FIELD, NUM_EXECUTIONS, VERBOSE],
    ),
    sub(
        "dags",
        "pause",
        &[TREAT_DAG_ID_AS_REGEX, YES, OUTPUT, VERBOSE],
    ),
    sub("dags", "report", &[BUNDLE_NAME, OUTPUT, VERBOSE]),
    sub("dags", "state", &[VERBOSE]),
    sub(
        "dags",
        "test",
        &[
            BUNDLE_NAME,
            DAGFILE_PATH,
            CONF,
            SHOW_DAGRUN,
            VERBOSE,
            MARK_SUCCESS_PATTERN,
        ],
    ),
    sub(
        "dags",
        "trigger",
        &[
            RUN_ID,
            CONF,
            LOGICAL_DATE,
            VERBOSE,
            NO_REPLACE_MICROSECONDS,
            OUTPUT,
        ],
    ),
    sub(
        "dags",
        "unpause",
        &[TREAT_DAG_ID_AS_REGEX, YES, OUTPUT, VERBOSE],
    ),
    sub("tasks", "failed-deps", &[BUNDLE_NAME, MAP_INDEX, VERBOSE]),
    sub("tasks", "list", &[BUNDLE_NAME, VERBOSE]),
    sub("tasks", "render", &[BUNDLE_NAME, VERBOSE, MAP_INDEX]),
    sub("tasks", "state", &[BUNDLE_NAME, VERBOSE, MAP_INDEX]),
    sub("tasks", "states-for-dag-run", &[OUTPUT, VERBOSE]),
    sub(
        "tasks",
        "test",
        &[BUNDLE_NAME, TASK_PARAMS, MAP_INDEX, VERBOSE],
    ),
    sub("config", "get-value", &[VERBOSE]),
    // Always run as `connections list --output json`, so that the runner can mask every
    // secret: it takes no option of its own.
    sub("connections", "list", &[]),
    sub("variables", "get", &[VAR_JSON, VAR_DEFAULT, VERBOSE]),
    sub(
        "variables",
        "list",
        &[OUTPUT, SHOW_VALUES, HIDE_SENSITIVE, VERBOSE],
    ),
    sub("pools", "get", &[OUTPUT, VERBOSE]),
    sub("pools", "list", &[OUTPUT, VERBOSE]),
    sub("providers", "list", &[OUTPUT, VERBOSE]),
    sub(
        "jobs",
        "check",
        &[
            JOB_TYPE,
            HOSTNAME,
            JOB_LOCAL,
            JOB_LIMIT,
            ALLOW_MULTIPLE,
            VERBOSE,
        ],
    ),
    Command {
        group: "version",
        sub: None,
        options: &[],
    },
    Command {
        group: "cheat-sheet",
        sub: None,
        options: &[VERBOSE],
    },
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn no_command_names_an_option_twice() {
        for c in COMMANDS {
            let all: Vec<&Opt> = c.options.iter().chain(std::iter::once(&HELP)).collect();
            for (i, o) in all.iter().enumerate() {
                for p in &all[i + 1..] {
                    assert!(
                        o.long != p.long && (o.short.is_none() || o.short != p.short),
                        "{}: {} and {}",
                        c.name(),
                        o.names(),
                        p.names()
                    );
                }
            }
        }
    }

    #[test]
    fn short_options_are_one_letter_and_long_ones_spelled_out() {
        for o in COMMANDS.iter().flat_map(|c| c.options) {
            assert!(o.long.starts_with("--") && o.long.len() > 3, "{o:?}");
            if let Some(s) = o.short {
                assert!(s.len() == 2 && s.starts_with('-'), "{o:?}");
            }
        }
    }

    #[test]
    fn a_groups_subcommands_are_listed_together() {
        let groups: Vec<&str> = COMMANDS.iter().map(|c| c.group).collect();
        let mut seen: Vec<&str> = Vec::new();
        for g in groups {
            if seen.last() != Some(&g) {
                assert!(!seen.contains(&g), "{g} is split");
                seen.push(g);
            }
        }
    }
}
