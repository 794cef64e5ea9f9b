/* Reader Pledges support widget: one <script src=".../widget/widget.js" data-...> tag.
 * Options (all optional): data-appeal, data-title, data-amounts="5,10,20", data-currency,
 * data-interval, data-locale (en, ru, de: a language of LANGUAGES), data-campaign, data-source,
 * data-target (CSS selector), data-css="none" to skip the default stylesheet. */
(function () {
  "use strict";
  var script = document.currentScript;
  var base = new URL(script.src).origin;
  var opts = script.dataset;
  var uid = "rp" + Math.random().toString(36).slice(2, 8);
  var root = document.createElement("div");
  root.className = "rp-widget";
  var target = opts.target && document.querySelector(opts.target);
  if (target) target.appendChild(root); else script.parentNode.insertBefore(root, script.nextSibling);
  // English is built in: the texts in _() are the catalog's msgids. Another language's words
  // come from its catalog as /widget/i18n/<lang>.json, fetched beside the config.
  var wanted = (opts.locale || document.documentElement.lang || navigator.language || "en").slice(0, 2).toLowerCase();
  var locale = "en", WORDS = {};
  var ready = (wanted === "en" || !/^[a-z]{2}$/.test(wanted) ? Promise.resolve() : fetch(base + "/widget/i18n/" + wanted + ".json")
    .then(function (response) {
      if (response.ok) return response.json().then(function (words) { WORDS = words; locale = wanted; });
    }).catch(function () {})).then(function () { root.setAttribute("lang", locale); });
  if (opts.css !== "none") {
    var link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = base + "/widget/widget.css";
    document.head.appendChild(link);
  }

  function _(text) { return WORDS[text] || text; }
  function t(text, values) {
    return text.replace(/%\((\w+)\)s/g, function (match, name) { return values[name]; });
  }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var name in attrs) node.setAttribute(name, attrs[name]);
    if (text != null) node.textContent = text;
    return node;
  }
  function loadScript(src) {
    return new Promise(function (resolve, reject) {
      var tag = el("script", { src: src });
      tag.onload = resolve;
      tag.onerror = reject;
      document.head.appendChild(tag);
    });
  }
  function api(path, body, headers) {
    return fetch(base + path, {
      method: body === undefined ? "GET" : "POST",
      headers: Object.assign({ "Content-Type": "application/json", "Accept-Language": locale }, headers || {}),
      body: body === undefined ? undefined : JSON.stringify(body)
    }).catch(function () { throw new Error(_("We could not reach the payment service. Please try again.")); }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (json) {
        if (response.status === 429) throw new Error(_("Too many attempts. Please try again later."));
        if (!response.ok) throw new Error(json.message || _("We could not reach the payment service. Please try again."));
        return json;
      });
    });
  }
  function randomKey() {
    var bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join("");
  }

  var config, currencies = {}, stripe, card, pending = null, busy = false, captchaToken = null;
  var form, errorBox, statusBox, button;

  function money(minor, code) {
    var exponent = currencies[code].exponent;
    return new Intl.NumberFormat(locale, { style: "currency", currency: code.toUpperCase(),
      minimumFractionDigits: minor % Math.pow(10, exponent) ? exponent : 0 }).format(minor / Math.pow(10, exponent));
  }
  // "5", "5.5" or "5,50" to minor units with string arithmetic: no float ever reaches the API.
  function parseAmount(text, code) {
    var match = /^\s*(\d{1,9})(?:[.,](\d*))?\s*$/.exec(text);
    if (!match) return null;
    var exponent = currencies[code].exponent;
    var fraction = (match[2] || "");
    if (fraction.length > exponent) return null;
    while (fraction.length < exponent) fraction += "0";
    return parseInt(match[1], 10) * Math.pow(10, exponent) + (fraction ? parseInt(fraction, 10) : 0);
  }
  function feeCover(amount) {
    var gross = Math.ceil((amount + config.fee.fixed_minor) * 10000 / (10000 - config.fee.basis_points));
    return gross - amount;
  }
  function chosen() {
    var code = form.currency.value;
    var choice = form.querySelector("input[name=amount]:checked");
    var amount = !choice ? null : choice.value === "other"
      ? parseAmount(form.custom.value, code) : parseInt(choice.value, 10) * Math.pow(10, currencies[code].exponent);
    var interval = form.querySelector("input[name=interval]:checked").value;
    return { code: code, amount: amount, interval: interval };
  }
  function refresh() {
    var c = chosen();
    var fee = form.querySelector(".rp-fee");
    form.custom.disabled = !form.querySelector("input[value=other]").checked;
    if (c.amount == null || c.amount < 1) {
      fee.textContent = t(_("Add %(fee)s to cover the card fee"), { fee: "" }).replace(/\s+/g, " ").trim();
      button.textContent = t(_("Pledge %(amount)s"), { amount: "" }).trim();
      return;
    }
    var total = c.amount + (form.cover_fees.checked ? feeCover(c.amount) : 0);
    fee.textContent = t(_("Add %(fee)s to cover the card fee"), { fee: money(feeCover(c.amount), c.code) });
    button.textContent = t(_("Pledge %(amount)s"), { amount: perInterval(total, c) });
  }
  function showError(message, field) {
    errorBox.textContent = message;
    errorBox.hidden = false;
    statusBox.textContent = "";
    if (field) { field.setAttribute("aria-invalid", "true"); field.focus(); }
  }
  function clearError() {
    errorBox.hidden = true;
    errorBox.textContent = "";
    Array.prototype.forEach.call(form.querySelectorAll("[aria-invalid]"), function (n) { n.removeAttribute("aria-invalid"); });
  }
  function perInterval(minor, c) {
    var label = money(minor, c.code);
    if (c.interval === "month") return t(_("%(amount)s a month"), { amount: label });
    if (c.interval === "year") return t(_("%(amount)s a year"), { amount: label });
    return label;
  }
  function declined() { return _("Your card was declined. Please try another card or contact your bank."); }
  function stripeMessage(error) {
    if (!error) return declined();
    if (error.code === "card_declined" || error.decline_code) return declined();
    if (/authenticat/i.test(error.message || "")) return _("Your bank could not confirm the payment. Please try again or use another card.");
    return error.message || declined();
  }

  function validate() {
    var c = chosen();
    var limits = currencies[c.code];
    var amountField = form.querySelector("input[value=other]").checked ? form.custom : form.querySelector("input[name=amount]:checked");
    if (c.amount == null) return showError(_("Enter an amount, for example 5."), form.custom), null;
    if (c.amount < limits.min_amount) return showError(t(_("The smallest pledge is %(amount)s."), { amount: money(limits.min_amount, c.code) }), amountField), null;
    if (c.amount > limits.max_amount) return showError(t(_("The largest pledge we can take online is %(amount)s."), { amount: money(limits.max_amount, c.code) }), amountField), null;
    if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(form.email.value.trim())) return showError(_("Enter a valid email address."), form.email), null;
    return c;
  }

  // The bank may ask twice (saving the card, then the first payment); whatever it answers,
  // the server hears it and ends a failed attempt.
  function authenticate(confirmed) {
    if (confirmed.status !== "requires_action") return confirmed;
    return stripe.handleNextAction({ clientSecret: confirmed.client_secret }).then(function () {
      return api("/v1/pledges/" + confirmed.id + "/confirm", {});
    }).then(authenticate);
  }

  function submit(event) {
    event.preventDefault();
    if (busy) return;
    clearError();
    var c = validate();
    if (!c) return;
    var body = { email: form.email.value.trim(), amount: c.amount, currency: c.code, interval: c.interval,
      cover_fees: form.cover_fees.checked, locale: locale, article_url: (location.origin + location.pathname).slice(0, 2048) };
    if (form.reader_name.value.trim()) body.name = form.reader_name.value.trim();
    if (opts.campaign) body.campaign = opts.campaign;
    if (opts.source) body.source = opts.source;
    if (form.website.value) body.website = form.website.value;  // the honeypot: only bots fill it
    var signature = JSON.stringify(body);
    busy = true;
    button.disabled = true;
    form.setAttribute("aria-busy", "true");
    statusBox.textContent = _("Processing your pledge…");
    var headers = { "Idempotency-Key": pending && pending.signature === signature ? pending.key : randomKey() };
    if (captchaToken) headers["Captcha-Token"] = captchaToken;
    var created = pending && pending.signature === signature && pending.id ? Promise.resolve(pending)
      : api("/v1/pledges", body, headers).then(function (result) {
        pending = { signature: signature, key: headers["Idempotency-Key"], id: result.id };
        return pending;
      });
    // The card goes to our server as a PaymentMethod id, and the server tries it: no secret
    // that could confirm a card reaches this page, except for this card's 3-D Secure step.
    created.then(function (p) {
      return stripe.createPaymentMethod({ type: "card", card: card,
        billing_details: { email: body.email, name: body.name } }).then(function (result) {
        if (result.error) throw new Error(stripeMessage(result.error));
        return api("/v1/pledges/" + p.id + "/confirm", { payment_method: result.paymentMethod.id });
      });
    }).then(authenticate).then(function (confirmed) {
      if (confirmed.status === "active") return thank(body, c, confirmed.upgrade_url);
      if (!confirmed.cards_left) pending = null;  // this pledge is over: the next try is a new one
      throw new Error(confirmed.reason || declined());
    }).catch(function (error) {
      showError(error.message || _("We could not reach the payment service. Please try again."));
    }).then(function () {
      busy = false;
      button.disabled = false;
      form.removeAttribute("aria-busy");
    });
  }

  function thank(body, c, upgradeUrl) {
    var label = perInterval(c.amount + (body.cover_fees ? feeCover(c.amount) : 0), c);
    var box = el("div", { "class": "rp-thanks", tabindex: "-1", role: "status" });
    box.appendChild(el("h2", { "class": "rp-title" }, _("Thank you!")));
    box.appendChild(el("p", {}, t(_("Your pledge of %(amount)s is active. A receipt is on its way to %(email)s."), { amount: label, email: body.email })));
    // A gift's thank-you offers the signed "make it monthly" page (same card, one more click).
    if (c.interval === "once" && upgradeUrl && /^https?:\/\//.test(upgradeUrl)) {
      box.appendChild(el("p", {}, _("Would you like to give a little every month instead?")));
      box.appendChild(el("a", { "class": "rp-monthly", href: upgradeUrl, target: "_blank", rel: "noopener" }, _("Make it monthly")));
    }
    root.replaceChild(box, form);
    box.focus();
  }

  function render() {
    var presets = (opts.amounts || "5,10,20").split(",").map(function (n) { return parseInt(n, 10); }).filter(function (n) { return n > 0; });
    var codes = Object.keys(currencies);
    var currency = codes.indexOf((opts.currency || "").toLowerCase()) >= 0 ? opts.currency.toLowerCase() : codes[0];
    var interval = ["month", "year", "once"].indexOf(opts.interval) >= 0 ? opts.interval : "month";
    form = el("form", { "class": "rp-form", novalidate: "", "aria-labelledby": uid + "-title" });
    form.appendChild(el("h2", { "class": "rp-title", id: uid + "-title" }, opts.title || _("Support our journalism")));
    form.appendChild(el("p", { "class": "rp-appeal" }, opts.appeal || _("Independent reporting is paid for by readers like you. Support us monthly, starting from just 2.")));
    var intervals = el("fieldset", { "class": "rp-choices" });
    intervals.appendChild(el("legend", {}, _("How often")));
    var names = { month: _("Monthly"), year: _("Yearly"), once: _("One time") };
    ["month", "year", "once"].forEach(function (name) {
      var label = el("label", { "class": "rp-choice" });
      var input = el("input", { type: "radio", name: "interval", value: name });
      input.checked = name === interval;
      label.appendChild(input);
      label.appendChild(el("span", {}, names[name]));
      intervals.appendChild(label);
    });
    form.appendChild(intervals);
    var amounts = el("fieldset", { "class": "rp-choices" });
    amounts.appendChild(el("legend", {}, _("Amount")));
    presets.concat(["other"]).forEach(function (value, index) {
      var label = el("label", { "class": "rp-choice" });
      var input = el("input", { type: "radio", name: "amount", value: String(value) });
      input.checked = index === 0;
      label.appendChild(input);
      label.appendChild(el("span", { "class": "rp-preset" }, value === "other" ? _("Other amount") : ""));
      amounts.appendChild(label);
    });
    var custom = el("input", { type: "text", name: "custom", inputmode: "decimal", autocomplete: "off", "aria-label": _("Other amount"), "class": "rp-custom" });
    amounts.appendChild(custom);
    form.appendChild(amounts);
    var select = el("select", { name: "currency" });
    codes.forEach(function (code) {
      var option = el("option", { value: code }, code.toUpperCase());
      option.selected = code === currency;
      select.appendChild(option);
    });
    form.appendChild(field(_("Currency"), select));
    form.appendChild(field(_("Email"), el("input", { type: "email", name: "email", autocomplete: "email", required: "" })));
    form.appendChild(field(_("Name (optional)"), el("input", { type: "text", name: "reader_name", autocomplete: "name", maxlength: "200" })));
    var fee = el("label", { "class": "rp-check" });
    fee.appendChild(el("input", { type: "checkbox", name: "cover_fees" }));
    fee.appendChild(el("span", { "class": "rp-fee" }));
    form.appendChild(fee);
    var trap = el("div", { "class": "rp-hp", "aria-hidden": "true" });
    trap.appendChild(field(_("Leave this field empty"), el("input", { type: "text", name: "website", tabindex: "-1", autocomplete: "off" })));
    form.appendChild(trap);
    var cardBox = el("div", { "class": "rp-field" });
    cardBox.appendChild(el("span", { "class": "rp-label", id: uid + "-card" }, _("Card")));
    var cardMount = el("div", { "class": "rp-card", role: "group", "aria-labelledby": uid + "-card" });
    cardBox.appendChild(cardMount);
    form.appendChild(cardBox);
    var captchaBox = el("div", { "class": "rp-captcha" });
    form.appendChild(captchaBox);
    errorBox = el("p", { "class": "rp-error", role: "alert" });
    errorBox.hidden = true;
    form.appendChild(errorBox);
    button = el("button", { type: "submit", "class": "rp-submit" });
    form.appendChild(button);
    statusBox = el("p", { "class": "rp-status", "aria-live": "polite" });
    form.appendChild(statusBox);
    root.textContent = "";
    root.appendChild(form);
    form.addEventListener("change", function () { clearError(); presetLabels(); refresh(); });
    form.addEventListener("input", refresh);
    form.addEventListener("submit", submit);
    presetLabels();
    refresh();
    card = stripe.elements({ locale: locale }).create("card", { style: { base: { fontSize: "16px" } } });
    card.mount(cardMount);
    if (config.captcha) mountCaptcha(captchaBox);
    root.setAttribute("data-ready", "true");
  }
  function presetLabels() {
    Array.prototype.forEach.call(form.querySelectorAll("input[name=amount]"), function (input) {
      if (input.value === "other") return;
      var code = form.currency.value;
      input.nextSibling.textContent = money(parseInt(input.value, 10) * Math.pow(10, currencies[code].exponent), code);
    });
  }
  function field(text, input) {
    var label = el("label", { "class": "rp-field" });
    label.appendChild(el("span", { "class": "rp-label" }, text));
    label.appendChild(input);
    return label;
  }
  function mountCaptcha(box) {
    var provider = config.captcha.provider;
    var src = provider === "turnstile" ? "https://challenges.cloudflare.com/turnstile/v0/api.js?render=explicit"
      : "https://js.hcaptcha.com/1/api.js?render=explicit";
    loadScript(src).then(function () {
      (provider === "turnstile" ? window.turnstile : window.hcaptcha).render(box, {
        sitekey: config.captcha.site_key, callback: function (token) { captchaToken = token; }
      });
    });
  }

  // Served by the API, widget.js names Stripe.js up front: fetch it beside the config.
  var early = window.ReaderPledges && window.ReaderPledges.stripeJs;
  var stripeLoaded = early ? loadScript(early) : null;
  Promise.all([api("/v1/widget/config"), ready]).then(function (results) {
    config = results[0];
    config.currencies.forEach(function (c) { currencies[c.code] = c; });
    return stripeLoaded || loadScript(config.stripe_js_url);
  }).then(function () {
    stripe = window.Stripe(config.publishable_key, { locale: locale });
    render();
  }).catch(function () {
    return ready.then(function () {
      root.appendChild(el("p", { "class": "rp-error", role: "alert" }, _("Pledges are not available on this site.")));
      root.setAttribute("data-ready", "error");
    });
  });
})();
