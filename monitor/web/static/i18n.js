// Chinese and English texts for the board, replay and login pages.
// The language is ?lang=zh|en, else the saved choice, else the browser's.
const TEXTS = {
  en: {
    title_board: "Live call board", title_replay: "Call replay", title_login: "Sign in",
    username: "User name", password: "Password", sign_in: "Sign in", sign_out: "Sign out",
    login_failed: "Wrong user name or password.",
    login_throttled: "Too many failed sign-ins; wait a few minutes and try again.", forbidden: "Your role may not open this page.",
    active_calls: "Active calls", avg_handle: "Avg handle time today", open_alerts: "Open alerts",
    compliance_rate: "Compliance rate", needs_improvement: "Needs improvement",
    queue: "Queue", agent: "Agent", caller: "Caller", all: "All", alerts: "Alerts",
    acknowledge: "Acknowledge", acknowledged: "acknowledged", resolved: "resolved", open: "open",
    customer: "Customer", level: "Level", snr: "SNR", clarity: "Clarity", talk: "Talk",
    dead_air: "Dead air", dead_air_now: "dead air now", connected: "live",
    disconnected: "reconnecting…", no_calls: "No live calls.", ended: "Ended",
    greeting: "Greeting", verification: "Verification", closing: "Closing",
    confirmation: "Confirmation", hold: "Hold", pre_closing: "Pre-closing",
    excellent: "excellent", good: "good", pass: "pass", needs_improvement_g: "needs improvement",
    search: "Search", from: "From", to: "To", grade: "Grade", status: "Status",
    min_score: "Min score", max_score: "Max score", text: "Text", results: "Calls",
    started: "Started", duration: "Duration", score: "Score", open_call: "Open",
    transcript: "Transcript", markers: "Markers", trace: "Trace", scorecard: "Scorecard",
    qa_review: "QA review", manual_score: "Manual score", comment: "Comment", save: "Save",
    saved: "Saved.", reviews: "Reviews", speech: "speech", silence: "silence",
    overtalk: "overtalk", quality: "Quality", compliance: "Compliance", alert: "Alert",
    compliance_hit: "compliance hit", compliance_miss: "compliance miss",
    board: "Board", replay: "Replay", language: "中文", not_found: "Call not found.",
    not_said: "not said", why: "Why this score", capped: "Grade capped at",
    cap_compliance_failed: "compliance below the pass score", cap_critical: "critical failure",
    cap_missed_required: "required stage missed", cap_forbidden: "forbidden phrase said",
    on_call: "on the call score", forbidden_kind: "forbidden phrase", missed: "missed",
    outside_window: "outside its window", order: "out of order", warning: "warning",
    critical: "critical", no_deductions: "No deductions.",
    format_suspect: "audio format?", channels_interleaved: "one mono signal read as two channels",
    channels_identical: "both channels identical", mono_interleaved: "two channels read as one",
    pitch_too_low: "rate probably too low", pitch_too_high: "rate probably too high",
    pace_double: "arrives at 2x real time: rate or channels too low",
    pace_half: "arrives at half real time: rate or channels too high",
    no_agent_leg: "agent audio not streamed: script not checked",
    overloaded: "Overloaded: transcripts may come late", transcripts_behind: "Transcripts behind by",
    storage_degraded: "Storage degraded: calls are still recorded, saving them is delayed",
    transcripts_pending: "Ended · transcripts pending", late: "late",
    late_title: "Transcribed late: the server was overloaded when it was said",
    // call status, severities, roles (the 403 page)
    st_active: "active", st_completed: "completed", st_interrupted: "interrupted",
    info: "info", severity: "Severity", kind: "Kind", live_card: "Live card", in_call: "in call",
    role_supervisor: "supervisor", role_qa: "QA analyst", role_admin: "administrator",
    forbidden_role: "Your role ({role}) may not open this page.",
    // alert kinds as a supervisor reads them
    ak_duration_long: "Call running long", ak_duration_short: "Call ended very early",
    ak_dead_air: "Long silence on the line", ak_poor_audio: "Poor audio quality",
    ak_compliance_miss: "Required script step missed", ak_compliance_order: "Script steps out of order",
    ak_forbidden_phrase: "Forbidden phrase said", ak_asr_lag: "Transcripts running late",
    ak_media_stalled: "Audio stopped arriving",
    ak_recording_failed: "Recording stopped (disk full or disk error)",
    ev_recording_failed: "recording stopped",
    er_transport: "connection dropped", er_stalled: "audio stopped", er_shutdown: "server stopping",
    er_server_crash: "server restarted", er_protocol: "bad data from the switch",
    // trace events
    ev_connected: "connected", ev_metadata: "call details received", ev_utterance: "utterance transcribed",
    ev_asr_shed: "utterance not transcribed (overload)", ev_disconnected: "disconnected",
    ev_asr_timeout: "utterance not transcribed (speech recognition timed out)",
    untranscribed: "not transcribed", transcript_incomplete: "Transcript incomplete: speech not transcribed in",
    ev_finalised: "analysis finished", ev_dead_air_started: "dead air started",
    ev_hold_started: "on hold", ev_hold_ended: "hold ended", ev_ivr_prompt: "IVR prompt",
    ev_ivr_prompt_started: "IVR prompt started", ev_ivr_prompt_ended: "IVR prompt ended",
    ev_leg_joined: "leg joined", ev_leg_ended: "leg ended", ev_leg_uuid: "leg id",
    ev_participant_joined: "participant joined", ev_graceful_shutdown: "switch ended the stream",
    ev_media: "media started", ev_media_format: "audio format", ev_paused: "paused",
    ev_resumed: "resumed", ev_stall: "audio stalled", ev_stop: "stop requested",
    ev_protocol_error: "protocol error", ev_format_suspect: "audio format suspect",
    ev_app_message: "application message", ev_alert: "alert raised", ev_alert_changed: "alert updated",
    ev_phrase_matched: "script phrase said", ev_phrase_missed: "script phrase missed",
    ev_order_violated: "script out of order", ev_forbidden_phrase: "forbidden phrase",
    ev_dead_air: "dead air", ev_overtalk: "overtalk", ev_long_dead_air: "long dead air",
    ev_excessive_overtalk: "excessive overtalk", ev_slow_response: "slow response",
    ev_poor_snr: "poor SNR", ev_low_clarity: "low clarity", ev_clipping: "clipping",
    ev_dropouts: "dropouts", ev_low_level: "low level", ev_high_level: "high level",
    ev_fast_speech: "fast speech",
  },
  zh: {
    title_board: "实时通话看板", title_replay: "通话回放", title_login: "登录",
    username: "用户名", password: "密码", sign_in: "登录", sign_out: "退出",
    login_failed: "用户名或密码错误。",
    login_throttled: "登录失败次数过多，请几分钟后再试。", forbidden: "您的角色无权打开此页面。",
    active_calls: "进行中通话", avg_handle: "今日平均处理时长", open_alerts: "未处理告警",
    compliance_rate: "合规率", needs_improvement: "待改进",
    queue: "队列", agent: "坐席", caller: "主叫", all: "全部", alerts: "告警",
    acknowledge: "确认", acknowledged: "已确认", resolved: "已解决", open: "未处理",
    customer: "客户", level: "电平", snr: "信噪比", clarity: "清晰度", talk: "说话占比",
    dead_air: "静默", dead_air_now: "正在静默", connected: "实时",
    disconnected: "正在重连…", no_calls: "当前没有通话。", ended: "已结束",
    greeting: "问候", verification: "身份核实", closing: "结束语",
    confirmation: "确认", hold: "保持", pre_closing: "结束前确认",
    excellent: "优秀", good: "良好", pass: "合格", needs_improvement_g: "待改进",
    search: "搜索", from: "开始", to: "结束", grade: "等级", status: "状态",
    min_score: "最低分", max_score: "最高分", text: "文本", results: "通话",
    started: "开始时间", duration: "时长", score: "得分", open_call: "打开",
    transcript: "转写", markers: "标记", trace: "轨迹", scorecard: "评分卡",
    qa_review: "质检评审", manual_score: "人工评分", comment: "评语", save: "保存",
    saved: "已保存。", reviews: "评审记录", speech: "语音", silence: "静音",
    overtalk: "抢话", quality: "质量", compliance: "合规", alert: "告警",
    compliance_hit: "合规命中", compliance_miss: "合规缺失",
    board: "看板", replay: "回放", language: "English", not_found: "找不到该通话。",
    not_said: "未说", why: "扣分说明", capped: "等级上限",
    cap_compliance_failed: "合规分低于及格线", cap_critical: "严重违规",
    cap_missed_required: "缺少必需环节", cap_forbidden: "说了禁用语",
    on_call: "计入总分", forbidden_kind: "禁用语", missed: "缺失",
    outside_window: "不在规定时段", order: "顺序错误", warning: "警告",
    critical: "严重", no_deductions: "无扣分。",
    format_suspect: "音频格式存疑", channels_interleaved: "单声道被当作双声道读取",
    channels_identical: "两个声道相同", mono_interleaved: "双声道被当作单声道读取",
    pitch_too_low: "采样率可能设得过低", pitch_too_high: "采样率可能设得过高",
    pace_double: "音频以两倍实时速度到达：采样率或声道数设得过低",
    pace_half: "音频以一半实时速度到达：采样率或声道数设得过高",
    no_agent_leg: "未接入坐席音频：不检查话术",
    overloaded: "系统过载：转写可能延迟", transcripts_behind: "转写落后",
    storage_degraded: "存储异常：通话仍在录音，保存延迟",
    transcripts_pending: "已结束 · 转写待完成", late: "延迟",
    late_title: "延迟转写：说话时系统过载",
    st_active: "进行中", st_completed: "已完成", st_interrupted: "中断",
    info: "提示", severity: "级别", kind: "类型", live_card: "实时卡片", in_call: "通话第",
    role_supervisor: "主管", role_qa: "质检员", role_admin: "管理员",
    forbidden_role: "您的角色（{role}）无权打开此页面。",
    ak_duration_long: "通话时间过长", ak_duration_short: "通话过早结束",
    ak_dead_air: "线路长时间静默", ak_poor_audio: "音质差",
    ak_compliance_miss: "漏说必需话术", ak_compliance_order: "话术顺序错误",
    ak_forbidden_phrase: "说了禁用语", ak_asr_lag: "转写延迟",
    ak_media_stalled: "音频中断",
    ak_recording_failed: "录音已停止（磁盘已满或磁盘故障）",
    ev_recording_failed: "录音已停止",
    er_transport: "连接断开", er_stalled: "音频中断", er_shutdown: "服务器正在停止",
    er_server_crash: "服务器已重启", er_protocol: "交换机数据有误",
    ev_connected: "已连接", ev_metadata: "收到通话信息", ev_utterance: "语句已转写",
    ev_asr_shed: "语句未转写（过载）", ev_disconnected: "已断开",
    ev_asr_timeout: "语句未转写（语音识别超时）",
    untranscribed: "未转写", transcript_incomplete: "转写不完整：以下时段的语音未转写",
    ev_finalised: "分析完成", ev_dead_air_started: "开始静默",
    ev_hold_started: "保持", ev_hold_ended: "结束保持", ev_ivr_prompt: "IVR 提示音",
    ev_ivr_prompt_started: "IVR 提示音开始", ev_ivr_prompt_ended: "IVR 提示音结束",
    ev_leg_joined: "通话方加入", ev_leg_ended: "通话方离开", ev_leg_uuid: "通话方标识",
    ev_participant_joined: "新参与方加入", ev_graceful_shutdown: "交换机结束推流",
    ev_media: "开始收到音频", ev_media_format: "音频格式", ev_paused: "已暂停",
    ev_resumed: "已恢复", ev_stall: "音频停滞", ev_stop: "请求停止",
    ev_protocol_error: "协议错误", ev_format_suspect: "音频格式存疑",
    ev_app_message: "应用消息", ev_alert: "触发告警", ev_alert_changed: "告警已更新",
    ev_phrase_matched: "说了规定话术", ev_phrase_missed: "漏说规定话术",
    ev_order_violated: "话术顺序错误", ev_forbidden_phrase: "禁用语",
    ev_dead_air: "静默", ev_overtalk: "抢话", ev_long_dead_air: "长时间静默",
    ev_excessive_overtalk: "抢话过多", ev_slow_response: "响应慢",
    ev_poor_snr: "信噪比差", ev_low_clarity: "清晰度低", ev_clipping: "削波",
    ev_dropouts: "断音", ev_low_level: "音量过低", ev_high_level: "音量过高",
    ev_fast_speech: "语速过快",
  },
};

// Dates and times in the page's language (a Chinese page shows 10:08:27, not "10:08:27 AM").
export function locale() {
  return lang() === "zh" ? "zh-CN" : "en";
}

export function lang() {
  const q = new URLSearchParams(location.search).get("lang");
  if (q === "zh" || q === "en") {
    localStorage.setItem("cw_lang", q);
    return q;
  }
  const saved = localStorage.getItem("cw_lang");
  if (saved === "zh" || saved === "en") return saved;
  return (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
}

export function t(key) {
  const l = lang();
  return TEXTS[l][key] ?? TEXTS.en[key] ?? key;
}

// A stored name (trace event, alert kind, status) in the page's language: its `prefix_` text,
// else the name made readable.
export function named(prefix, name) {
  if (!name) return "";
  const key = `${prefix}_${name}`;
  const text = t(key);
  return text === key ? name.replace(/_/g, " ") : text;
}

export const ALERT_KINDS = [
  "duration_long", "duration_short", "dead_air", "poor_audio", "compliance_miss",
  "compliance_order", "forbidden_phrase", "asr_lag", "media_stalled", "recording_failed",
];

export function gradeText(grade) {
  if (!grade) return "";
  return t(grade === "needs_improvement" ? "needs_improvement_g" : grade);
}

// Fill every [data-i18n] element's text and [data-i18n-ph] placeholder; set <html lang>.
export function translatePage() {
  document.documentElement.lang = lang() === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-ph]")) el.placeholder = t(el.dataset.i18nPh);
  const sw = document.getElementById("lang-switch");
  if (sw) {
    sw.textContent = t("language");
    sw.onclick = () => {
      const u = new URL(location.href);
      u.searchParams.set("lang", lang() === "zh" ? "en" : "zh");
      location.href = u.toString();
    };
  }
}
