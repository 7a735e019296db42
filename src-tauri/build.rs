fn main() {
    // Declaring the app's commands generates an `allow-dispatch` permission; the
    // capability in capabilities/default.json grants exactly that one.
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .app_manifest(tauri_build::AppManifest::new().commands(&["dispatch"])),
    )
    .expect("tauri-build failed");
}
