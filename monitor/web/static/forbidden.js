// The 403 page: the server wrote it in the request's language; a language the user chose
// on another page (saved in this browser) wins.
import { lang, t } from "./i18n.js";

const msg = document.getElementById("forbidden-msg");
if (msg) {
  document.documentElement.lang = lang() === "zh" ? "zh-CN" : "en";
  const role = msg.dataset.role || "";
  const name = t(`role_${role}`);
  msg.textContent = t("forbidden_role").replace("{role}", name === `role_${role}` ? role : name);
}
