//! deploy/Containerfile stays true to the platform it packs: it copies every
//! program the production ecosystem file runs to where the file looks for
//! it, and runs that file with `supd run`.

use std::path::Path;

#[test]
fn the_containerfile_packs_every_program_the_platform_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let containerfile = std::fs::read_to_string(root.join("deploy/Containerfile")).unwrap();
    // Instructions, their continuation lines joined.
    let text = containerfile.replace("\\\n", " ");
    let instructions: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let cmd = instructions
        .iter()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("a CMD");
    let file: Vec<String> = serde_json::from_str(cmd).expect("CMD in exec form");
    let eco = root.join(&file[0]);
    assert!(
        eco.exists(),
        "CMD names {}, which is not in the repository",
        file[0]
    );
    assert!(
        instructions.contains(&r#"ENTRYPOINT ["supd", "run"]"#),
        "{instructions:?}"
    );
    // Every program the file runs, relative to the file's folder.
    let text = std::fs::read_to_string(&eco).unwrap();
    let scripts: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("script = "))
        .map(|s| s.trim_matches('"').to_string())
        .collect();
    assert_eq!(scripts.len(), 6, "{scripts:?}");
    let copied: Vec<String> = instructions
        .iter()
        .filter(|l| l.starts_with("COPY --from=build"))
        .flat_map(|l| {
            let words: Vec<&str> = l.split_whitespace().skip(2).collect();
            let (dest, sources) = words.split_last().unwrap();
            sources
                .iter()
                .filter_map(|s| Path::new(s).file_name())
                .map(|n| format!("{dest}{}", n.to_string_lossy()))
                .collect::<Vec<_>>()
        })
        .collect();
    for script in scripts {
        // Relative to the file's folder, as supd resolves it, from WORKDIR.
        let mut path: Vec<&str> = Path::new(&file[0])
            .parent()
            .unwrap()
            .to_str()
            .unwrap()
            .split('/')
            .collect();
        for part in script.split('/') {
            match part {
                ".." => drop(path.pop()),
                part => path.push(part),
            }
        }
        let path = path.join("/");
        assert!(
            copied.contains(&path),
            "{script} is not copied to {path}: {copied:?}"
        );
    }
}
