//! A cell the control plane has no route to, on real Airflow: `hangar agent` (and so its
//! environment's processes) runs in a network namespace of its own, joined to this machine by
//! a veth pair. From the namespace the control plane, Postgres and Redis are reached at this
//! machine's end of the link (relayed here to their loopback addresses); the environment's
//! api-server listens on the namespace's own loopback, which nothing outside reaches. Airflow
//! through Hangar still answers, over the tunnel the agent opened. The namespace and the link
//! go with the test, whatever happens (`NetNs`'s drop).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hangar_tenants::api::{CreateEnvironment, Role};
use hangar_tenants::Phase;
use hangar_tests::{airflow_api, spawn_stack_with, test_runtime_dir, wait_for_phase, Stack};
use rand::Rng;
use reqwest::Method;
use secrecy::ExposeSecret;

/// Runs `ip` with `args`, failing the test if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace joined to this machine by a veth pair `host_ip` ↔ `ns_ip` (a /30 of
/// its own), with its loopback up and no other route: it reaches this machine's end of the
/// link only. Removed, with the link, when dropped.
struct NetNs {
    name: String,
    host_if: String,
    host_ip: Ipv4Addr,
    ns_ip: Ipv4Addr,
}

impl NetNs {
    fn create() -> Self {
        let mut rng = rand::thread_rng();
        let (b, c) = (rng.gen_range(100..=250u8), rng.gen_range(0..=255u8));
        let tag = format!("{:05}", std::process::id() % 100_000);
        let ns = Self {
            name: format!("hangar-tunnel-{tag}-{b}-{c}"),
            host_if: format!("hgt{tag}h"),
            host_ip: Ipv4Addr::new(10, b, c, 1),
            ns_ip: Ipv4Addr::new(10, b, c, 2),
        };
        let ns_if = format!("hgt{tag}n");
        let (host_cidr, ns_cidr) = (format!("{}/30", ns.host_ip), format!("{}/30", ns.ns_ip));
        ip(&["netns", "add", &ns.name]);
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &ns.name]);
        ip(&["addr", "add", &host_cidr, "dev", &ns.host_if]);
        ip(&["link", "set", &ns.host_if, "up"]);
        for args in [
            vec!["addr", "add", ns_cidr.as_str(), "dev", ns_if.as_str()],
            vec!["link", "set", ns_if.as_str(), "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            let mut full = vec!["netns", "exec", ns.name.as_str(), "ip"];
            full.extend(args);
            ip(&full);
        }
        ns
    }

    /// Its handle, for `nsenter --net=`.
    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    /// Whether `url` answers 200 from inside the namespace.
    fn answers_inside(&self, url: &str) -> bool {
        Command::new("nsenter")
            .arg(format!("--net={}", self.path()))
            .args([
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-m",
                "10",
                "-w",
                "%{http_code}",
                url,
            ])
            .output()
            .is_ok_and(|o| o.stdout == b"200")
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting one end of a veth pair deletes the other; a namespace whose processes are
        // gone goes with its name.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Relays every connection to `listen_ip` (on a free port, returned) to `to` on this machine's
/// loopback: how the namespace reaches a service that listens on the loopback only.
async fn relay(listen_ip: Ipv4Addr, to: u16) -> u16 {
    let listener = tokio::net::TcpListener::bind((listen_ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    port
}

/// `hangar agent` in the namespace; killed when dropped, its log printed if the test failed.
struct NsAgent {
    child: Child,
    log: PathBuf,
}

impl Drop for NsAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- agent log (last lines) ---");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// `url` with its `127.0.0.1:<port>` replaced by `host:<relayed>`.
fn relayed(url: &str, port: u16, host: Ipv4Addr, relayed: u16) -> String {
    url.replace(&format!("127.0.0.1:{port}"), &format!("{host}:{relayed}"))
}

fn start_agent_in(ns: &NetNs, stack: &Stack, urls: &AgentUrls) -> NsAgent {
    let log = stack.dir.join("agent.log");
    let child = Command::new("nsenter")
        .arg(format!("--net={}", ns.path()))
        .arg("--")
        .arg(super::hangar_bin())
        .arg("agent")
        .env("HANGAR_URL", &urls.control_plane)
        .env("HANGAR_CELL", "local")
        .env("HANGAR_CELL_TOKEN", &stack.cell_token)
        .env("HANGAR_AGENT_DIR", &stack.dir)
        .env("HANGAR_CGROUP_PARENT", &stack.cgroup_parent)
        .env("HANGAR_PLATFORM_POSTGRES_URL", &urls.postgres)
        .env("HANGAR_PLATFORM_REDIS_URL", &urls.redis)
        .env(
            "HANGAR_BUCKET_URL",
            format!("file://{}", stack.bucket.display()),
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    NsAgent { child, log }
}

/// Where the agent in the namespace finds the platform.
struct AgentUrls {
    control_plane: String,
    postgres: String,
    redis: String,
}

/// The namespace has no way out to a package index: the environment's runtime is built here
/// first, in the tests' shared runtime cache, which the agent's data directory points to.
async fn runtime_ready_for(stack: &Stack) {
    let cache =
        hangar_data_plane::runtime::python::RuntimeCache::new(&test_runtime_dir(), Path::new("uv"))
            .with_python("/usr/bin/python3");
    cache
        .ensure(hangar_tenants::DEFAULT_AIRFLOW_VERSION, "")
        .await
        .unwrap();
    // (The stack made an empty one for its own, unused, agent.)
    let runtimes = stack.dir.join("runtimes");
    let _ = std::fs::remove_dir(&runtimes);
    std::os::unix::fs::symlink(test_runtime_dir(), runtimes).unwrap();
}

/// Whether `url` answers 200 to a request from this machine.
async fn answers_here(url: &str) -> bool {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    http.get(url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn airflow_answers_through_the_tunnel_from_a_cell_without_a_route_into_it() {
    let stack = spawn_stack_with(false).await.unwrap();
    runtime_ready_for(&stack).await;
    let ns = NetNs::create();
    let cp_port: u16 = stack
        .app
        .address
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let pg_port: u16 = url::Url::parse(&stack.postgres_admin)
        .unwrap()
        .port()
        .unwrap();
    let urls = AgentUrls {
        control_plane: format!("http://{}:{}", ns.host_ip, relay(ns.host_ip, cp_port).await),
        postgres: relayed(
            &stack.postgres_admin,
            pg_port,
            ns.host_ip,
            relay(ns.host_ip, pg_port).await,
        ),
        redis: relayed(
            stack.redis_admin.expose_secret(),
            stack.redis_port,
            ns.host_ip,
            relay(ns.host_ip, stack.redis_port).await,
        ),
    };
    let _agent = start_agent_in(&ns, &stack, &urls);
    stack.app.wait_for_tunnel("local", true).await;

    let editor = stack
        .app
        .tenant_with_role("delta", Role::Editor)
        .await
        .unwrap();
    let env = CreateEnvironment {
        name: "etl".into(),
        ..Default::default()
    };
    editor
        .create_environment("delta", &env, None)
        .await
        .unwrap();
    let e = wait_for_phase(
        &editor,
        "delta",
        "etl",
        Phase::Available,
        Duration::from_secs(300),
    )
    .await;

    // The api-server's own address answers inside the namespace only: not on this machine's
    // loopback, nor at the namespace's end of the link.
    let reported = e.observed.unwrap().endpoints["api"].clone();
    let health = format!("{reported}/api/v2/monitor/health");
    assert!(ns.answers_inside(&health), "{health} inside the namespace");
    assert!(
        !answers_here(&health).await,
        "{health} from the control plane's machine"
    );
    let port = url::Url::parse(&reported).unwrap().port().unwrap();
    let at_link = SocketAddr::new(IpAddr::V4(ns.ns_ip), port);
    assert!(
        tokio::net::TcpStream::connect(at_link).await.is_err(),
        "{at_link} from the control plane's machine"
    );

    // Through Hangar it answers: REST, import errors and the UI.
    let (status, body) =
        airflow_api(&editor, "delta", "etl", Method::GET, "monitor/health", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["metadatabase"]["status"], "healthy", "{body}");
    let (status, body) = airflow_api(&editor, "delta", "etl", Method::GET, "dags", None).await;
    assert_eq!(status, 200, "{body}");
    editor.import_errors("delta", "etl").await.unwrap();
    let ui = editor
        .request(Method::GET, "v1/tenants/delta/environments/etl/airflow/")
        .send()
        .await
        .unwrap();
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.unwrap().contains("<html"), "the UI's page");

    // The agent still manages it across the boundary.
    editor.delete_environment("delta", "etl").await.unwrap();
    wait_for_phase(
        &editor,
        "delta",
        "etl",
        Phase::Deleted,
        Duration::from_secs(120),
    )
    .await;
}
