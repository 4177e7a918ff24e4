// Hostile text for the XSS scenario: markup, event handlers, script URLs, SVG and MathML, broken
// and nested markup, template syntax, and bidirectional tricks. Each must render as the exact text
// it is, with nothing executed, no element created from it and no CSP violation.

/** Message bodies (any text the API accepts). */
export const MESSAGES = [
  "<script>alert('xss-1')</script>",
  "<img src=x onerror=alert('xss-2')>",
  "<img src=x onerror=\"window.__xss='img'\">",
  "<svg onload=alert('xss-4')>",
  "<svg><script>alert('xss-5')</script></svg>",
  '<svg><a xlink:href="javascript:alert(6)"><text x="20" y="20">click</text></a></svg>',
  '<iframe src="javascript:alert(7)"></iframe>',
  '<a href="javascript:alert(8)">click me</a>',
  "javascript:alert(9)",
  "JaVaScRiPt:alert(10)//https://example.com",
  "[click](javascript:alert(11))",
  "<body onload=alert(12)>",
  '"><script>alert(13)</script>',
  "'><img src=x onerror=alert(14)>",
  "<details open ontoggle=alert(15)>",
  "<math><mtext><table><mglyph><style><img src=x onerror=alert(16)>",
  "<style>*{display:none !important}</style>",
  '<object data="javascript:alert(18)"></object>',
  '<embed src="data:text/html,<script>alert(19)</script>">',
  '<form action="javascript:alert(20)"><button>go</button></form>',
  "<input autofocus onfocus=alert(21)>",
  "<video><source onerror=alert(22)></video>",
  '<meta http-equiv="refresh" content="0;url=javascript:alert(23)">',
  '<base href="https://evil.example/">',
  "<<script>script>alert(25)<</script>/script>",
  "<scr<script>ipt>alert(26)</scr</script>ipt>",
  '<img src="x" onerror="&#97;&#108;&#101;&#114;&#116;(27)">',
  "&lt;script&gt;alert(28)&lt;/script&gt;",
  '<!--<img src="--><img src=x onerror=alert(29)//">',
  '<noscript><p title="</noscript><img src=x onerror=alert(30)>">',
  'https://example.com/"><script>alert(31)</script>',
  "https://example.com/?q=<img src=x onerror=alert(32)>",
  "data:text/html;base64,PHNjcmlwdD5hbGVydCgzMyk8L3NjcmlwdD4=",
  "vbscript:msgbox(34)",
  "{{constructor.constructor('alert(35)')()}}",
  "${alert(36)}",
  '<a href="https://ok.example" onclick="alert(37)">looks fine</a>',
  "</textarea><script>alert(38)</script>",
  '<div style="position:fixed;inset:0;background:url(javascript:alert(39))">cover</div>',
  "unclosed <b><i>markup <a href=",
  "<x onclick=alert(41) style=display:block;position:fixed;inset:0>overlay</x>",
  "user\u202Etxt.exe",
  "https://evil.example/\u202Egpj.exe",
  "\u2066\u2067nested isolates\u2069 then \u202Dforced ltr\u202C and \u202Bembedded",
  "mixed עברית <b>bold</b> العربية \u200F<script>alert(45)</script>",
  "line one\n<script>alert(46)</script>\n\tline three",
];

/** Display names (1–64 characters; the server refuses control and bidi-override characters). */
export const DISPLAY_NAMES = [
  "<img src=x onerror=alert('name-1')>",
  "<script>alert('name-2')</script>",
  '"><svg onload=alert(3)>',
  "<a href=javascript:alert(4)>Boss</a>",
  "javascript:alert(5)",
  "{{7*7}}<b>bold</b>${6}",
];

/** Display names the server must refuse (direction overrides that would spoof a name). */
export const REFUSED_DISPLAY_NAMES = ["evil\u202Egnp.exe", "Admin\u2066 (verified)\u2069"];

/** Channel topics (0–250 characters, no control or bidi-override characters). */
export const TOPICS = [
  "<script>alert('topic-1')</script>",
  "<img src=x onerror=alert('topic-2')> see https://example.com/<b>",
  '<a href="javascript:alert(3)">agenda</a> & <iframe src=//evil.example>',
  "</bdi></span><svg/onload=alert(4)>",
];

/** Channel names are `[a-z0-9][a-z0-9-_]*`: markup can never be one, and the server says so. */
export const CHANNEL_NAMES = ["<script>alert(1)</script>", "x onmouseover=alert(1)", "javascript:alert(1)", "\u202Eevil"];

export const SIZE = MESSAGES.length + DISPLAY_NAMES.length + REFUSED_DISPLAY_NAMES.length + TOPICS.length + CHANNEL_NAMES.length;
