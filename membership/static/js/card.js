// The card step: the only page that needs JavaScript.
//
// 1. Ask our server for a SetupIntent (POST data-setup-url) and confirm the card with Stripe.js.
// 2. Send the SetupIntent id to our server (POST data-submit-url), which subscribes or charges.
// 3. If the bank wants 3-D Secure, let Stripe.js ask, then tell our server (POST data-confirm-url).
// Works the same with real Stripe.js and with localstripe's stand-in.
(function () {
  "use strict";
  const form = document.getElementById("card-form");
  if (!form || typeof Stripe === "undefined") {
    return;
  }
  const stripe = Stripe(form.dataset.publishableKey);
  const card = stripe.elements().create("card");
  card.mount("#card-element");

  const button = form.querySelector("button[type=submit]");
  const message = document.getElementById("card-message");
  const csrf = form.querySelector("input[name=csrf_token]").value;

  function show(text, kind) {
    message.textContent = text;
    message.className = "card-message " + (kind || "info");
    message.hidden = !text;
  }

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify(body || {}),
    });
    let data = {};
    try {
      data = await response.json();
    } catch (err) {
      data = {};
    }
    if (!response.ok) {
      throw new Error(data.message || "Something went wrong. You have not been charged.");
    }
    return data;
  }

  async function handle(outcome) {
    // Real Stripe usually asks for 3-D Secure once; localstripe may ask twice.
    for (let round = 0; outcome.status === "requires_action" && round < 3; round += 1) {
      show("Your bank asks you to confirm the payment…");
      const result = await stripe.confirmCardPayment(outcome.client_secret);
      if (result.error) {
        show(result.error.message || "The payment was not authorised.", "error");
      }
      outcome = await post(form.dataset.confirmUrl);
    }
    if (outcome.status === "active") {
      show("Thank you! One moment…", "success");
      window.location.assign(form.dataset.successUrl);
      return true;
    }
    if (outcome.status === "pending") {
      show(outcome.message || "Your payment is being processed.");
      return false;
    }
    show(outcome.message || "The payment did not go through. Try another card.", "error");
    return false;
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    if (button.disabled) {
      return;
    }
    button.disabled = true;
    show("Checking your card…");
    try {
      const setup = await post(form.dataset.setupUrl);
      const billing = {};
      const name = form.dataset.name;
      if (name) {
        billing.name = name;
      }
      const result = await stripe.confirmCardSetup(setup.client_secret, {
        payment_method: { card: card, billing_details: billing },
      });
      if (result.error) {
        show(result.error.message || "Your card was declined.", "error");
        return;
      }
      const outcome = await post(form.dataset.submitUrl, {
        setup_intent_id: result.setupIntent.id,
      });
      await handle(outcome);
    } catch (err) {
      show(err.message || "Something went wrong. You have not been charged.", "error");
    } finally {
      button.disabled = false;
    }
  });
})();
