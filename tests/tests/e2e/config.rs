//! `tms-server config` and the precedence of configuration layers.

use std::process::Command;

use tms_e2e::binary;

fn tms_server() -> Command {
    let mut cmd = Command::new(binary("tms-server"));
    for (key, _) in std::env::vars() {
        if key.starts_with("TMS_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn line<'a>(output: &'a str, setting: &str) -> &'a str {
    output
        .lines()
        .find(|l| l.split_whitespace().next() == Some(setting))
        .unwrap_or_else(|| panic!("no line for {setting} in:\n{output}"))
}

#[test]
fn layers_apply_in_order_and_say_where_each_value_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tms.toml");
    std::fs::write(
        &file,
        r#"
listen = "0.0.0.0:9001"
db_pool_size = 7
log_format = "json"
s3_region = "eu-west-1"
database_url = "postgres://tms:file-password@db.internal/tms"
"#,
    )
    .unwrap();
    let out = tms_server()
        .args(["--config", file.to_str().unwrap(), "config", "--s3-region", "eu-central-1"])
        .env("TMS_DB_POOL_SIZE", "9")
        .env("TMS_S3_REGION", "us-west-2")
        .env("TMS_S3_SECRET_ACCESS_KEY", "env-secret-value")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();

    assert!(line(&text, "listen").contains("0.0.0.0:9001"), "{text}");
    assert!(line(&text, "listen").contains(&format!("(file {})", file.display())), "{text}");
    assert!(line(&text, "db_pool_size").contains("= 9  (env TMS_DB_POOL_SIZE)"), "{text}");
    assert!(line(&text, "s3_region").contains("= eu-central-1  (flag)"), "{text}");
    assert!(line(&text, "log_format").contains("json"), "{text}");
    assert!(line(&text, "shutdown_timeout_secs").contains("(default)"), "{text}");
    assert!(line(&text, "database_url").contains("postgres://tms:********@db.internal/tms"), "{text}");
    assert!(line(&text, "s3_secret_access_key").contains("********"), "{text}");
    assert!(!text.contains("file-password") && !text.contains("env-secret-value"), "{text}");
}

#[test]
fn derived_defaults_follow_the_data_dir() {
    let out = tms_server().args(["config", "--data-dir", "/srv/tms"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(line(&text, "database_url").contains("sqlite:///srv/tms/tms.sqlite"), "{text}");
    assert!(line(&text, "object_store_url").contains("file:///srv/tms/blobs"), "{text}");
}

#[test]
fn invalid_settings_are_refused_with_the_setting_named() {
    let out = tms_server().args(["config", "--database-url", "mysql://x/y"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("database_url"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.toml");
    std::fs::write(&file, "db_pool_sise = 3\n").unwrap();
    let out = tms_server().args(["--config", file.to_str().unwrap(), "config"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("db_pool_sise"), "{err}");

    let out = tms_server().args(["--listen", "not-an-address"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn help_documents_every_setting_with_its_variable() {
    let out = tms_server().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for (setting, env) in tms_server::config::Config::ENV_VARS {
        let flag = format!("--{}", setting.replace('_', "-"));
        assert!(help.contains(&flag), "{flag} missing from --help");
        assert!(help.contains(env), "{env} missing from --help");
    }
}

#[test]
fn unreachable_database_stops_start_up_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = tms_server()
        .args(["--listen", "127.0.0.1:0", "--data-dir", dir.path().to_str().unwrap()])
        .args(["--database-url", "postgres://postgres@127.0.0.1:1/none"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("migrating the database"), "{err}");
}

#[test]
fn help_never_shows_secret_values_from_the_environment() {
    let out = tms_server()
        .arg("--help")
        .env("TMS_DATABASE_URL", "postgres://tms:db-password-123@db/tms")
        .env("TMS_S3_SECRET_ACCESS_KEY", "s3-secret-456")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(!help.contains("db-password-123") && !help.contains("s3-secret-456"), "{help}");
}

tms_e2e::backend_test!(migrate_command_applies_migrations_once, |db| {
    let dir = tempfile::tempdir().unwrap();
    let migrate = || {
        tms_server()
            .args(["migrate", "--data-dir", dir.path().to_str().unwrap(), "--database-url", &db.url])
            .args(["--log-format", "json"])
            .output()
            .unwrap()
    };
    let first = migrate();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let first = String::from_utf8(first.stdout).unwrap();
    assert!(first.contains("migrations applied") && !first.contains(r#""applied":0"#), "{first}");
    let again = String::from_utf8(migrate().stdout).unwrap();
    assert!(again.contains(r#""applied":0"#), "{again}");
});

#[test]
fn a_taken_port_is_reported_with_its_setting_before_anything_is_written() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = tms_server().current_dir(dir.path()).args(["--listen", &addr]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")) && err.contains("TMS_LISTEN"), "{err}");
    assert!(!dir.path().join("tms-data").exists(), "nothing is created for a server that cannot listen");
}

#[test]
fn a_bad_value_in_the_environment_is_blamed_on_its_variable() {
    let out = tms_server().arg("config").env("TMS_LISTEN", "bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TMS_LISTEN") && err.contains("bogus"), "{err}");
    assert!(!err.contains("--listen"), "{err}");
    // Typed as a flag, the flag is named.
    let out = tms_server().args(["--listen", "bogus", "config"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));
}

#[test]
fn admin_commands_do_not_create_a_database_where_there_is_none() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["operator", "create", "--email", "ops@psp.example", "--role", "support", "--password-stdin"][..],
        &["keys", "list"][..],
    ] {
        let mut child = tms_server()
            .current_dir(dir.path())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"a long pass phrase\n").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("there is no database at ./tms-data/tms.sqlite"), "{err}");
        assert!(!dir.path().join("tms-data").exists(), "{args:?} created a data directory");
    }
}

#[test]
fn each_command_lists_its_own_options_and_the_settings_are_listed_once() {
    let out = tms_server().args(["operator", "create", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("--email") && !help.contains("--db-pool-size"), "{help}");
    let out = tms_server().arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert_eq!(help.matches("--db-pool-size").count(), 1, "{help}");
    // Settings still apply after a command.
    let out = tms_server().args(["config", "--db-pool-size", "3"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("db_pool_size"), "{out:?}");
}
