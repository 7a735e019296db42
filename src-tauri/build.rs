fn main() {
    // Declaring the app's commands generates an `allow-<command>` permission each; the
    // capability in capabilities/default.json grants exactly those.
    tauri_build::try_build(tauri_build::Attributes::new().app_manifest(
        tauri_build::AppManifest::new().commands(&["dispatch", "seat", "join", "leave"]),
    ))
    .expect("tauri-build failed");
}
