// The live parts: the notifications socket feeds the bell, toasts and order statuses on the page;
// the public stock socket keeps the products on the page current. Everything else works without
// JavaScript.
(function () {
  // An order's state as a customer reads it (the same words as web's `api::state_words`).
  var STATE_WORDS = {
    pending: 'Reserving items',
    awaiting_payment: 'Awaiting payment',
    completed: 'Completed',
    cancelled: 'Cancelled'
  };
  // What says the page updates itself shows only where it does.
  document.documentElement.classList.add('live');
  // A form that came back refused: the first field it names has the focus, so a keyboard or
  // screen-reader user lands where the problem is.
  var invalid = document.querySelector('[aria-invalid="true"]');
  if (invalid) invalid.focus();
  watchStock();
  if (!document.body.dataset.signedIn) return;
  // The newest notification when the page was rendered: anything later is news to this page
  // (the socket replays it), even if it happened before the socket opened.
  var after = document.body.dataset.after;
  var lastId = after !== undefined ? Number(after) : null;
  var latestAtHello = null;
  var delay = 1000;
  var unread = document.getElementById('unread');
  // The bell's count, shown and read out alike.
  function setUnread(count) {
    if (!unread) return;
    unread.textContent = String(count);
    var bell = unread.closest('.bell');
    if (bell) bell.setAttribute('aria-label', 'Notifications, ' + count + ' unread');
  }
  var toasts = document.getElementById('toasts');
  // The cart badge follows the cart (a line added in another tab, an order's lines put back),
  // keeping the newest version it saw.
  var cartVersion = Number(document.body.dataset.cartVersion || 0);
  function setCart(count, version) {
    if (version <= cartVersion) return;
    cartVersion = version;
    var badge = document.getElementById('cart-count');
    if (badge) badge.textContent = String(count);
    var link = document.getElementById('cart-link');
    if (link) link.setAttribute('aria-label', 'Cart, ' + count + (count === 1 ? ' item' : ' items'));
  }

  function toast(text) {
    var el = document.createElement('div');
    el.className = 'toast';
    el.textContent = text;
    toasts.appendChild(el);
    setTimeout(function () { el.remove(); }, 8000);
  }

  function show(n) {
    if (lastId !== null && n.id <= lastId) return;
    lastId = n.id;
    // The hello's count already includes what the socket replays.
    var isNew = latestAtHello === null || n.id > latestAtHello;
    if (unread && !n.read && isNew) setUnread(Number(unread.textContent || 0) + 1);
    toast(n.title + ' — ' + n.body);
    if (n.order_id && n.order_status) {
      document.querySelectorAll('[data-order-id="' + n.order_id + '"] [data-status]').forEach(function (el) {
        el.textContent = STATE_WORDS[n.order_status] || n.order_status;
        el.setAttribute('data-status', n.order_status);
      });
      var why = document.getElementById('why');
      if (why && n.order_status === 'cancelled' && document.querySelector('[data-order-id="' + n.order_id + '"]')) {
        // Why it ended (expired, out of stock, cancelled elsewhere) stays on the page, not only
        // in the toast.
        why.textContent = n.body;
        why.hidden = false;
      }
      if (n.order_status !== 'awaiting_payment' && document.querySelector('[data-order-id="' + n.order_id + '"]')) {
        // Paid, cancelled or expired: nothing left to pay or cancel on this page.
        document.querySelectorAll('[data-payable]').forEach(function (el) { el.remove(); });
        var paid = document.getElementById('paid-live');
        if (paid && n.order_status === 'completed') paid.hidden = false;
      }
      var reserving = document.getElementById('reserving');
      if (reserving && document.querySelector('[data-order-id="' + n.order_id + '"]') && n.order_status !== 'pending') {
        // The order moved on: show its new state (and the payment form when it became payable).
        window.location.reload();
      }
    }
  }

  function connect() {
    var scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    var url = scheme + location.host + '/ws/notifications' + (lastId !== null ? '?after=' + lastId : '');
    var socket = new WebSocket(url);
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === 'hello') {
        delay = 1000;
        // Live from here on (what tests and styles can wait on).
        document.documentElement.dataset.socket = 'open';
        latestAtHello = message.latest_id;
        if (lastId === null) lastId = message.latest_id;
        setUnread(message.unread);
      } else if (message.type === 'notification') {
        show(message.notification);
      } else if (message.type === 'cart') {
        setCart(message.count, message.version);
      }
    };
    socket.onclose = function (event) {
      delete document.documentElement.dataset.socket;
      if (event.code === 4001) { return; }  // signed out or expired: the next page load refreshes
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();

  // Live stock, for anyone: the products on this page (`data-stock-product`, with the version
  // the page showed) over the public socket; each change shows how many are left, or that the
  // product sold out (or came back), without a reload.
  function watchStock() {
    var versions = {};
    var ids = [];
    document.querySelectorAll('[data-stock-product]').forEach(function (el) {
      var id = el.dataset.stockProduct;
      var version = Number(el.dataset.version || 0);
      if (!(id in versions) && ids.length < 50) ids.push(id);
      versions[id] = Math.max(versions[id] || 0, version);
    });
    if (!ids.length) return;
    var wait = 1000;
    function open() {
      var scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
      var socket = new WebSocket(scheme + location.host + '/ws/notifications/stock?products=' + ids.join(','));
      socket.onmessage = function (event) {
        var news = JSON.parse(event.data);
        if (news.type === 'hello') {
          wait = 1000;
          document.documentElement.dataset.stockWatch = 'open';
          return;
        }
        if (news.type !== 'stock' || news.version <= (versions[news.product_id] || 0)) return;
        versions[news.product_id] = news.version;
        document.querySelectorAll('[data-stock-product="' + news.product_id + '"]').forEach(function (el) {
          el.dataset.version = String(news.version);
          el.querySelectorAll('[data-available]').forEach(function (count) { count.textContent = String(news.available); });
          el.querySelectorAll('[data-in-stock]').forEach(function (part) { part.hidden = !news.in_stock; });
          el.querySelectorAll('[data-sold-out]').forEach(function (part) { part.hidden = news.in_stock; });
        });
      };
      socket.onclose = function () {
        setTimeout(open, wait);
        wait = Math.min(wait * 2, 30000);
      };
    }
    open();
  }
})();
