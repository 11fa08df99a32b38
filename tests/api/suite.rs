//! The one list of the black-box API suite's modules. `tests/api/main.rs`
//! runs it on SQLite and `tests/api_postgres.rs` on PostgreSQL, each with
//! `api_suite!()`: a module added here runs on both backends, and a file in
//! `tests/api/` missing from the list fails the suite.

macro_rules! api_suite {
    () => {
        api_suite!(@modules
            audit,
            authorization,
            backchannel,
            authorize,
            client_grants,
            clients,
            cookies,
            hardening,
            jwt_attacks,
            lifecycle,
            oidc,
            limits,
            ops,
            pages,
            password_pool,
            profile,
            registration,
            request_log,
            security_changes,
            sessions,
            throttling,
            token_endpoint,
            revocation_feed,
            token_verification,
        );
    };
    (@modules $($module:ident),* $(,)?) => {
        $(mod $module;)*

        /// A test file left out of the list would silently run nowhere.
        #[test]
        fn every_file_of_tests_api_is_in_the_suite() {
            let listed = [$(concat!(stringify!($module), ".rs")),*];
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api");
            let mut missing = Vec::new();
            for entry in std::fs::read_dir(dir).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                let harness = ["main.rs", "helpers.rs", "suite.rs"].contains(&name.as_str());
                if name.ends_with(".rs") && !harness && !listed.contains(&name.as_str()) {
                    missing.push(name);
                }
            }
            assert!(missing.is_empty(), "not in tests/api/suite.rs: {missing:?}");
        }
    };
}
