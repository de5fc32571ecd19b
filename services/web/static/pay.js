// The card field: Stripe.js Elements (real Stripe, or the local stand-in) turns the card into a
// PaymentMethod in the browser; only its id is posted to us. 3-D Secure is finished here too.
(function () {
  var form = document.getElementById('payment-form');
  if (!form || typeof Stripe === 'undefined') return;
  var stripe = Stripe(form.dataset.stripeKey);
  var error = document.getElementById('card-error');
  var secret = form.dataset.clientSecret;
  if (secret) {
    stripe.confirmCardPayment(secret).then(function (result) {
      if (result.error) { error.textContent = result.error.message || 'The card could not be confirmed.'; }
      else { window.location.reload(); }
    });
  }
  var card = stripe.elements().create('card');
  card.mount('#card-element');
  var button = document.getElementById('pay');
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
