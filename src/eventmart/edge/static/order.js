/* The order page: a live timeline from EventSource('/api/orders/{id}/stream'), where each
   `order` event's data is the order's JSON, and the cancel button.

   Right after checkout the shop may not have the order yet: the page is then rendered
   "placing" (data-placing="yes", no items yet). The stream waits for the order and the
   first event fills the page in. If the stream is refused and the API says the order is
   not found, it is not coming: the page says so. */
"use strict";

(function () {
  const em = window.eventmart;
  const TERMINAL = ["DELIVERED", "CANCELLED"];

  document.addEventListener("DOMContentLoaded", function () {
    const root = document.querySelector("article.order");
    if (!root) return;
    const labels = JSON.parse(root.dataset.labels || "{}");
    const reasons = JSON.parse(root.dataset.reasons || "{}");
    const cancellableStatuses = JSON.parse(root.dataset.cancellableStatuses || "[]");
    const currency = root.dataset.currency || "USD";
    const status = em.byTestId("order-status");
    const reason = em.byTestId("cancellation-reason");
    const timeline = em.byTestId("order-timeline");
    const total = em.byTestId("order-total");
    const cancel = em.byTestId("cancel-order");
    const cancelMessage = em.byTestId("cancel-message");
    const live = em.byTestId("live-indicator");
    const placingNote = em.byTestId("order-placing");
    const pageError = em.byTestId("page-error");
    const itemsBody = em.byTestId("order-items").tBodies[0];
    let placing = root.dataset.placing === "yes";

    function setLive(state, text) {
      live.dataset.state = state;
      live.textContent = text;
    }

    function entry(e) {
      const li = document.createElement("li");
      li.dataset.testid = "timeline-entry";
      li.dataset.type = e.type;
      li.dataset.status = e.status || "";
      const what = document.createElement("span");
      what.className = "what";
      what.textContent = labels[e.type] || e.type;
      li.appendChild(what);
      if (e.at != null) {
        const time = document.createElement("time");
        const d = em.toDate(e.at);
        if (d) time.dateTime = d.toISOString();
        time.textContent = em.when(e.at);
        li.appendChild(time);
      }
      return li;
    }

    function itemRow(item, currency) {
      const tr = document.createElement("tr");
      tr.dataset.testid = "order-item";
      tr.dataset.productId = item.product_id;
      const name = document.createElement("td");
      const link = document.createElement("a");
      link.href = "/products/" + encodeURIComponent(item.product_id);
      link.textContent = item.name;
      name.appendChild(link);
      const cell = function (text) {
        const td = document.createElement("td");
        td.className = "num";
        td.textContent = text;
        return td;
      };
      const unit = item.unit_price_cents;
      tr.append(name, cell(String(item.quantity)), cell(em.money(unit, currency)),
        cell(typeof unit === "number" ? em.money(unit * item.quantity, currency) : ""));
      return tr;
    }

    function apply(order) {
      // The items never change after checkout; a placing page learns them here.
      if (Array.isArray(order.items) && (placing || itemsBody.rows.length !== order.items.length)) {
        const cur = order.currency || currency;
        itemsBody.replaceChildren.apply(itemsBody, order.items.map(function (i) { return itemRow(i, cur); }));
      }
      if (placing) {
        placing = false;
        root.dataset.placing = "no";
        placingNote.hidden = true;
        document.title = document.title.replace(/^Placing order/, "Order");
      }
      status.textContent = em.statusLabel(order.status);
      status.dataset.status = order.status;
      status.className = "status status-" + String(order.status).toLowerCase();
      const code = order.cancellation_reason;
      reason.dataset.reason = code || "";
      reason.hidden = !code;
      reason.textContent = code
        ? "Cancelled: " + code + " \u2014 " + (reasons[code] || "") +
          (order.cancellation_detail ? " (" + order.cancellation_detail + ")" : "")
        : "";
      timeline.replaceChildren.apply(timeline, (order.timeline || []).map(entry));
      const cents = order.total_cents != null ? order.total_cents : order.total;
      total.textContent = em.money(cents, order.currency || currency);
      const canCancel = typeof order.cancellable === "boolean"
        ? order.cancellable : cancellableStatuses.indexOf(order.status) >= 0;
      cancel.hidden = !canCancel;
      if (!canCancel) em.say(cancelMessage, "", "info");
    }

    let source = null;
    let failures = 0;

    function notFound(text) {
      setLive("ended", "No live updates: the order was not found.");
      placingNote.hidden = true;
      pageError.textContent = text;
      pageError.hidden = false;
    }

    async function refused() {
      // Why was the stream refused? For a page still placing the order, a 404 means the
      // order is not coming (the stream waited for it); anything else is worth a retry.
      if (placing) {
        const answer = await em.api("GET", "/api/orders/" + encodeURIComponent(root.dataset.orderId));
        if (answer.status === 401) { em.toLogin(); return; }
        if (answer.status === 404) { notFound(em.detail(answer.data)); return; }
        if (answer.ok) { apply(answer.data); connect(); return; }
      }
      failures += 1;
      const wait = Math.min(30, 2 * failures);
      setLive("error", "Live updates interrupted; retrying in " + wait + " s.");
      setTimeout(connect, wait * 1000);
    }

    function connect() {
      if (!window.EventSource) {
        setLive("error", "Live updates are not supported by this browser; reload to refresh.");
        return;
      }
      source = new EventSource(root.dataset.stream, { withCredentials: true });
      source.addEventListener("open", function () {
        failures = 0;
        setLive("live", "Live: new statuses appear as they happen.");
      });
      source.addEventListener("order", function (event) {
        const order = JSON.parse(event.data);
        apply(order);
        if (TERMINAL.indexOf(order.status) >= 0) {
          source.close();
          setLive("ended", "Final status.");
        }
      });
      source.addEventListener("error", function () {
        if (live.dataset.state === "ended") return;
        if (source.readyState === EventSource.CLOSED) {
          // The stream was refused (e.g. the read side is down): try again, backing off.
          refused();
        } else {
          setLive("connecting", "Reconnecting to live updates\u2026");
        }
      });
    }

    cancel.addEventListener("click", async function () {
      cancel.disabled = true;
      em.say(cancelMessage, "Asking to cancel\u2026", "info");
      const answer = await em.api("POST", "/api/orders/" + encodeURIComponent(root.dataset.orderId) + "/cancel");
      if (answer.status === 401) { em.toLogin(); return; }
      cancel.disabled = false;
      if (answer.ok) {
        em.say(cancelMessage, "Cancellation requested; the status will change in a moment.", "ok");
      } else {
        em.say(cancelMessage, "Could not cancel: " + em.detail(answer.data), "error");
      }
    });

    if (root.dataset.terminal !== "yes") connect();
  });
})();
