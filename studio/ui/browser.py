"""What runs in the browser only: Ctrl/Cmd+Enter to generate, and the light/dark theme toggle.

Both are small scripts attached to events (`js=`), since the launcher owns `launch()` and with it Gradio 6's `head=`.
The theme follows Gradio's own switch, the `dark` class on the body that `?__theme=dark` sets: the toggle flips that
class and remembers the choice in localStorage; on load a remembered choice is applied unless the URL names a theme.
"""

from __future__ import annotations

GENERATE_ID = "generate-{kind}"  # elem_id of each generator tab's Generate button
THEME_TOGGLE_ID = "theme-toggle"
THEME_KEY = "atelier-theme"  # localStorage key: "dark" or "light"

# On page load: apply the remembered theme, and listen for Ctrl+Enter (Cmd+Enter on a Mac) anywhere on the page,
# which clicks the Generate button of the tab on screen (hidden tabs' buttons have no layout box). Installed once:
# Gradio may run load events again after a reconnect.
ON_LOAD_JS = """
() => {
    if (!new URL(window.location.href).searchParams.get("__theme")) {
        const saved = window.localStorage.getItem("__THEME_KEY__");
        if (saved === "dark" || saved === "light") {
            document.body.classList.toggle("dark", saved === "dark");
        }
    }
    if (window.__atelierShortcuts) {
        return;
    }
    window.__atelierShortcuts = true;
    document.addEventListener("keydown", (event) => {
        if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey) || event.repeat) {
            return;
        }
        const visible = [...document.querySelectorAll('[id^="generate-"]')]
            .map((element) => (element.tagName === "BUTTON" ? element : element.querySelector("button")))
            .find((button) => button && button.getClientRects().length > 0 && !button.disabled);
        if (visible) {
            event.preventDefault();
            visible.click();
        }
    });
}
""".replace("__THEME_KEY__", THEME_KEY)

TOGGLE_THEME_JS = """
() => {
    const dark = document.body.classList.toggle("dark");
    window.localStorage.setItem("__THEME_KEY__", dark ? "dark" : "light");
}
""".replace("__THEME_KEY__", THEME_KEY)
