/* The basket page: change or remove lines, and check out with an Idempotency-Key.
   One key per checkout attempt: a double click or a retry of the same form reuses it
   (the basket service then answers with the same order); changing the form starts a
   new attempt with a new key. */
"use strict";

(function () {
  const em = window.eventmart;

  document.addEventListener("DOMContentLoaded", function () {
    const list = em.byTestId("basket-lines");
    if (!list) return;
    const message = em.byTestId("basket-message");
    const total = em.byTestId("basket-total");
    const empty = em.byTestId("basket-empty");
    const checkoutSection = em.byTestId("checkout-section");
    const template = document.getElementById("line-template");

    function lineNode(line, index) {
      const node = template.content.firstElementChild.cloneNode(true);
      node.dataset.productId = line.product_id;
      const name = node.querySelector(".line-name");
      name.href = "/products/" + encodeURIComponent(line.product_id);
      name.textContent = line.name;
      node.querySelector(".line-unit").textContent = em.money(line.unit_price_cents) + " each";
      const input = node.querySelector("input");
      input.id = "qty-" + (index + 1);
      input.value = String(line.quantity);
      node.querySelector("label").htmlFor = input.id;
      node.querySelector('[data-action="remove"]').setAttribute("aria-label", "Remove " + line.name);
      node.querySelector(".line-total").textContent = em.money(line.line_total_cents);
      return node;
    }

    function render(basket) {
      const items = basket.items || [];
      list.replaceChildren.apply(list, items.map(lineNode));
      total.textContent = em.money(basket.total_cents);
      empty.hidden = items.length > 0;
      checkoutSection.hidden = items.length === 0;
    }

    async function change(li, method, body, done) {
      const productId = li.dataset.productId;
      li.setAttribute("aria-busy", "true");
      li.querySelectorAll("button, input").forEach(function (el) { el.disabled = true; });
      const answer = await em.api(method, "/api/basket/items/" + encodeURIComponent(productId), body);
      if (answer.status === 401) { em.toLogin(); return; }
      if (!answer.ok) {
        li.removeAttribute("aria-busy");
        li.querySelectorAll("button, input").forEach(function (el) { el.disabled = false; });
        em.say(message, "Could not change the basket: " + em.detail(answer.data), "error");
        return;
      }
      render(answer.data);
      em.say(message, done, "ok");
      const again = list.querySelector('[data-product-id="' + CSS.escape(productId) + '"] input');
      if (again) again.focus();
    }

    list.addEventListener("submit", function (event) {
      event.preventDefault();
      const li = event.target.closest("li");
      const input = li.querySelector("input");
      const quantity = parseInt(input.value, 10);
      if (!(quantity >= 1 && quantity <= 99)) {
        em.say(message, "Choose a quantity from 1 to 99, or remove the line.", "error");
        input.focus();
        return;
      }
      change(li, "PUT", { quantity: quantity }, "Quantity updated.");
    });

    list.addEventListener("click", function (event) {
      const button = event.target.closest('[data-action="remove"]');
      if (!button) return;
      const li = button.closest("li");
      const name = li.querySelector(".line-name").textContent;
      change(li, "DELETE", undefined, "Removed " + name + ".");
    });

    /* checkout */
    const form = em.byTestId("checkout-form");
    const button = em.byTestId("checkout-button");
    const error = em.byTestId("checkout-error");
    const select = em.byTestId("card-token");
    const hint = em.byTestId("card-hint");
    let attempt = { key: form.dataset.idempotencyKey || em.newKey(), body: null };

    select.addEventListener("change", function () {
      hint.textContent = select.selectedOptions[0].dataset.hint || "";
    });

    function busy(on) {
      button.disabled = on;
      form.setAttribute("aria-busy", on ? "true" : "false");
      button.textContent = on ? "Placing order\u2026" : "Place order";
    }

    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      if (form.getAttribute("aria-busy") === "true") return; // a double click: one attempt
      error.hidden = true;
      const field = function (name) { return form.elements.namedItem(name).value.trim(); };
      const body = {
        shipping_address: {
          name: field("name"), line1: field("line1"), line2: field("line2"),
          city: field("city"), postal_code: field("postal_code"), country: field("country"),
        },
        card_token: select.value,
      };
      const serialized = JSON.stringify(body);
      if (attempt.body !== null && attempt.body !== serialized) attempt = { key: em.newKey(), body: null };
      attempt.body = serialized;
      form.dataset.idempotencyKey = attempt.key;
      busy(true);
      const answer = await em.api("POST", "/api/basket/checkout", body, { "Idempotency-Key": attempt.key });
      if (answer.ok && answer.data && answer.data.order_id) {
        location.assign("/orders/" + encodeURIComponent(answer.data.order_id));
        return;
      }
      busy(false);
      if (answer.status === 401) { em.toLogin(); return; }
      let text = em.detail(answer.data);
      if (answer.status === 0 || answer.status === 429 || answer.status >= 500) {
        const retry = answer.headers.get("Retry-After");
        text += ". Your order may not be placed yet: press \u201cPlace order\u201d again" +
          (retry ? " in " + retry + " s" : "") + " (it is safe: the same attempt is never charged twice).";
      }
      error.textContent = text;
      error.hidden = false;
      error.focus();
    });

    window.addEventListener("pageshow", function (event) {
      if (event.persisted) busy(false);
    });
  });
})();
