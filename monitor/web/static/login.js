// Sign in, then go where the user wanted (or to the page their role may open).
import { login } from "./api.js";
import { t, translatePage } from "./i18n.js";
import { safeNext } from "./redirect.js";

translatePage();
document.title = `callwatch · ${t("title_login")}`;
const form = document.getElementById("login-form");
const error = document.getElementById("login-error");
const reason = new URLSearchParams(location.search).get("reason");
if (reason === "forbidden") {
  error.textContent = t("forbidden");
  error.hidden = false;
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  error.hidden = true;
  try {
    const r = await login(form.username.value, form.password.value);
    const next = new URLSearchParams(location.search).get("next");
    const home = r.role === "qa" ? "/replay" : "/board";
    location.href = safeNext(next, location.origin) ?? home;
  } catch (e) {
    error.textContent = t(e.status === 429 ? "login_throttled" : "login_failed");
    error.hidden = false;
  }
});
