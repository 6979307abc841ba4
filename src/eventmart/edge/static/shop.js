/* eventmart pages: shared helpers (window.eventmart) and the product page's basket form.
   Hand-written, no dependencies. Everything that changes state goes through /api/... */
"use strict";

(function () {
  const SYMBOLS = { USD: "$", EUR: "\u20ac", GBP: "\u00a3" };

  /** Call the BFF's JSON API; never throws. Cookies authenticate (same origin). */
  async function api(method, url, body, headers) {
    const init = {
      method: method,
      credentials: "same-origin",
      headers: Object.assign({ Accept: "application/json" }, headers || {}),
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (err) {
      return { ok: false, status: 0, data: { detail: "the shop did not answer (network error)" }, headers: new Headers() };
    }
    let data;
    try {
      data = await response.json();
    } catch (err) {
      data = { detail: response.statusText || "unexpected answer" };
    }
    return { ok: response.ok, status: response.status, data: data, headers: response.headers };
  }

  /** The API's `detail` as one sentence (validation errors name their fields). */
  function detail(data) {
    const d = data && data.detail;
    if (typeof d === "string") return d;
    if (Array.isArray(d)) {
      return d.map(function (e) {
        const loc = (e.loc || []).filter(function (p) { return p !== "body" && p !== "query" && p !== "path"; });
        return (loc.length ? loc.join(".") + ": " : "") + (e.msg || "invalid");
      }).join("; ");
    }
    return "something went wrong";
  }

  function money(cents, currency) {
    if (typeof cents !== "number") return "\u2014";
    const code = currency || "USD";
    const abs = Math.abs(cents);
    const whole = Math.floor(abs / 100).toLocaleString("en-US");
    const amount = whole + "." + String(abs % 100).padStart(2, "0");
    const sign = cents < 0 ? "-" : "";
    return code in SYMBOLS ? sign + SYMBOLS[code] + amount : sign + amount + " " + code;
  }

  function toDate(value) {
    if (typeof value === "number") return new Date(value > 1e11 ? value : value * 1000);
    if (typeof value === "string" && value) {
      const d = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : value + "Z");
      return isNaN(d.getTime()) ? null : d;
    }
    return null;
  }

  /** Same text as the server's `when` filter: YYYY-MM-DD HH:MM:SS UTC. */
  function when(value) {
    const d = toDate(value);
    if (!d) return value == null ? "" : String(value);
    return d.toISOString().slice(0, 19).replace("T", " ") + " UTC";
  }

  function statusLabel(status) {
    const text = String(status || "").replace(/_/g, " ").toLowerCase();
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  function toLogin() {
    location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
  }

  /** Put a message in a live region; kind is "info", "ok" or "error". */
  function say(el, text, kind) {
    if (!el) return;
    el.textContent = text;
    el.dataset.kind = kind || "info";
  }

  function newKey() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
    const bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.from(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }

  function byTestId(id, root) {
    return (root || document).querySelector('[data-testid="' + id + '"]');
  }

  window.eventmart = {
    api: api, detail: detail, money: money, when: when, toDate: toDate,
    statusLabel: statusLabel, toLogin: toLogin, say: say, newKey: newKey, byTestId: byTestId,
  };

  /* The product page: "add to basket" adds to what the basket already holds. */
  function initAddToBasket() {
    const form = byTestId("add-to-basket-form");
    if (!form) return;
    const input = byTestId("add-to-basket-qty", form);
    const button = byTestId("add-to-basket", form);
    const message = byTestId("basket-message");
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      if (form.dataset.signedIn !== "yes") { toLogin(); return; }
      const quantity = parseInt(input.value, 10);
      if (!(quantity >= 1 && quantity <= 99)) {
        say(message, "Choose a quantity from 1 to 99.", "error");
        input.focus();
        return;
      }
      if (form.getAttribute("aria-busy") === "true") return;
      form.setAttribute("aria-busy", "true");
      button.disabled = true;
      try {
        const productId = form.dataset.productId;
        const basket = await api("GET", "/api/basket");
        if (basket.status === 401) { toLogin(); return; }
        if (!basket.ok) { say(message, "Could not add to the basket: " + detail(basket.data), "error"); return; }
        const line = (basket.data.items || []).find(function (i) { return i.product_id === productId; });
        const had = line ? line.quantity : 0;
        const wanted = Math.min(99, had + quantity);
        if (wanted === had) { say(message, "You already have the most you can order (99) in your basket.", "error"); return; }
        const put = await api("PUT", "/api/basket/items/" + encodeURIComponent(productId), { quantity: wanted });
        if (put.status === 401) { toLogin(); return; }
        if (!put.ok) { say(message, "Could not add to the basket: " + detail(put.data), "error"); return; }
        say(message, "Added. You have " + wanted + " in your basket. ", "ok");
        const link = document.createElement("a");
        link.href = "/basket";
        link.textContent = "Go to basket";
        link.dataset.testid = "go-to-basket";
        message.appendChild(link);
      } finally {
        form.removeAttribute("aria-busy");
        button.disabled = false;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", initAddToBasket);
})();
