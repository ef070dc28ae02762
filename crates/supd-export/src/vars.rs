//! The environment every export gives an instance: the app's `env`, then
//! the variables supd itself sets, which win over the app's own (as under
//! supd: `supctl env` shows the same order).

use supd_config::AppConfig;

/// The app's `env` without the variables supd sets over it (its name, the
/// instance number under `instance_var` and `NODE_APP_INSTANCE`, `PORT`),
/// nor those in `also` that the format sets (`HOST` in a container).
pub fn own(app: &AppConfig, also: &[&str]) -> Vec<(String, String)> {
    let ours = [
        "SUPD_APP_NAME",
        "NODE_APP_INSTANCE",
        "PORT",
        &app.instance_var,
    ];
    app.env
        .iter()
        .filter(|(key, _)| !ours.contains(&key.as_str()) && !also.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// supd's variables but the instance number: `SUPD_APP_NAME`, and `PORT`
/// with a port.
pub fn supd(app: &AppConfig) -> Vec<(String, String)> {
    let mut vars = vec![("SUPD_APP_NAME".to_string(), app.name.clone())];
    if let Some(port) = app.port {
        vars.push(("PORT".into(), port.to_string()));
    }
    vars
}

/// The names the instance number goes under: `instance_var`, and
/// `NODE_APP_INSTANCE` (PM2's) when that is another.
pub fn instance_names(app: &AppConfig) -> Vec<&str> {
    let mut names = vec![app.instance_var.as_str()];
    if app.instance_var != "NODE_APP_INSTANCE" {
        names.push("NODE_APP_INSTANCE");
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supd_variables_win_over_the_apps_own() {
        let mut app = AppConfig::with_defaults("api".into(), "x".into(), "/".into());
        app.port = Some(3000);
        for (key, value) in [
            ("PORT", "1"),
            ("INSTANCE_ID", "9"),
            ("HOST", "::1"),
            ("MODE", "prod"),
        ] {
            app.env.insert(key.into(), value.into());
        }
        let own = |also: &[&str]| {
            own(&app, also)
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        };
        assert_eq!(own(&[]), ["HOST", "MODE"]);
        assert_eq!(own(&["HOST"]), ["MODE"]);
        assert_eq!(supd(&app)[1], ("PORT".into(), "3000".into()));
        assert_eq!(instance_names(&app), ["INSTANCE_ID", "NODE_APP_INSTANCE"]);
        app.instance_var = "NODE_APP_INSTANCE".into();
        assert_eq!(instance_names(&app), ["NODE_APP_INSTANCE"]);
    }
}
