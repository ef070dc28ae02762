//! What the format modules' tests share: apps to export, and a way to read
//! a field of the YAML they print.

use supd_config::AppConfig;

use crate::Options;
use crate::yaml::Value;

/// An app `name` under the project `/srv/p`, edited by `edit`.
pub fn app(name: &str, edit: impl FnOnce(&mut AppConfig)) -> AppConfig {
    let mut app = AppConfig::with_defaults(name.into(), "/srv/p/bin/app".into(), "/srv/p".into());
    edit(&mut app);
    app
}

/// The project `/srv/p` in the image `img:1`.
pub fn options() -> Options {
    Options {
        project: "/srv/p".into(),
        image: "img:1".into(),
    }
}

/// The YAML documents of `text`.
pub fn documents(text: &str) -> Vec<Value> {
    text.split("---\n")
        .filter(|doc| !doc.trim().is_empty())
        .map(|doc| serde_norway::from_str(doc).expect("valid YAML"))
        .collect()
}

/// The value at `path` (`spec.replicas`, `containers.0.name`) in `doc`.
pub fn get<'a>(doc: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .fold(doc, |value, key| match key.parse::<usize>() {
            Ok(index) => &value[index],
            Err(_) => &value[key],
        })
}
