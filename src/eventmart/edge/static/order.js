/* The order page: a live timeline from EventSource('/api/orders/{id}/stream'), where each
   `order` event's data is the order's JSON, and the cancel button. */
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

    function apply(order) {
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
          failures += 1;
          const wait = Math.min(30, 2 * failures);
          setLive("error", "Live updates interrupted; retrying in " + wait + " s.");
          setTimeout(connect, wait * 1000);
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
