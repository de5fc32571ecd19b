// The card field: Stripe.js Elements (real Stripe, or the local stand-in) turns the card into a
// PaymentMethod in the browser; only its id is posted to us. 3-D Secure is finished here too: a
// payment that needs it comes back to this page (GET) with the client secret in the fragment
// (`#authenticate=…`), so the bank's step runs once and a reload never sends the payment again.
(function () {
  var form = document.getElementById('payment-form');
  if (!form || typeof Stripe === 'undefined') return;
  var stripe = Stripe(form.dataset.stripeKey);
  var error = document.getElementById('card-error');
  var button = document.getElementById('pay');
  var prefix = '#authenticate=';
  if (location.hash.indexOf(prefix) === 0) {
    var secret = decodeURIComponent(location.hash.slice(prefix.length));
    // Out of the address bar at once: a reload or a bookmark does not start the step again.
    history.replaceState(null, '', location.pathname + location.search);
    button.disabled = true;
    stripe.confirmCardPayment(secret).then(function (result) {
      var intent = result && result.paymentIntent;
      var status = intent && intent.status;
      if (status === 'succeeded' || status === 'processing' || status === 'requires_capture') {
        // Paid (the order completes a moment later): the page as it is now, fetched anew.
        location.replace(location.pathname);
        return;
      }
      error.textContent = (result && result.error && result.error.message) ||
        'Your bank did not confirm this payment. Try again, or use another card.';
      button.disabled = false;
    });
  }
  var card = stripe.elements().create('card');
  card.mount('#card-element');
  form.addEventListener('submit', function (event) {
    if (document.getElementById('payment-method').value) return;
    event.preventDefault();
    button.disabled = true;
    error.textContent = '';
    stripe.createPaymentMethod({ type: 'card', card: card }).then(function (result) {
      if (!result || result.error) {
        error.textContent = (result && result.error && result.error.message) || 'Check the card details.';
        button.disabled = false;
        return;
      }
      document.getElementById('payment-method').value = result.paymentMethod.id;
      form.submit();
    });
  });
})();
