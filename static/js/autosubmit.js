// Submits a filter form when one of its <select data-autosubmit> changes. A static
// file, not an inline onchange="...": the site's Content-Security-Policy allows
// scripts from the site only, so inline handlers never run behind nginx.
(function () {
  "use strict";
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () {
      if (select.form) select.form.submit();
    });
  });
})();
