# ruff: noqa: E501  (sentences of the interface stay whole, one per line, for translators)
"""The portal's words, in French (the default) and English.

Templates call ``t("key")``; a key missing in English falls back to French, so that a
page is never blank. Numbers and dates follow the language (decimal comma in French).
"""

from __future__ import annotations

from datetime import datetime

from analysis.options import Language
from experiments.protocol.vocabulary import SCHOOL_TIMEZONE

__all__ = [
    "TEXT", "academie_name", "format_date",
    "translate",
]


TEXT: dict[str, dict[str, str]] = {
    "fr": {
        "site": "Preuve — portail des expérimentations",
        "skip": "Aller au contenu",
        "nav": "Navigation principale",
        "portfolio": "Portefeuille d'expérimentations",
        "usage_nav": "Usages de mes classes",
        "sign_in": "Connexion",
        "sign_out": "Se déconnecter",
        "signed_in_as": "Connecté·e en tant que",
        "switch_lang": "English",
        "switch_lang_code": "en",
        "token": "Jeton d'accès",
        "token_help": "Le jeton qui vous a été remis (il commence par « pv_ »). Il n'est jamais affiché.",
        "sign_in_intro": "Connectez-vous avec votre jeton d'accès pour lire les rapports d'impact et le portefeuille d'expérimentations.",
        "bad_token": "Ce jeton n'est pas reconnu (inconnu ou révoqué).",
        "throttled": "Trop de tentatives de connexion refusées depuis votre adresse : réessayez dans quelques minutes.",
        "bad_form": "Le formulaire a expiré ; veuillez réessayer.",
        "role.researcher": "chercheur·e",
        "role.academie": "académie",
        "role.edtech": "entreprise EdTech",
        "role.officer": "chargé·e de programme",
        "role.admin": "administration",
        "state.draft": "brouillon",
        "state.registered": "protocole enregistré",
        "state.enrolling": "inscriptions en cours",
        "state.running": "en cours",
        "state.analysing": "en analyse",
        "state.closed": "terminée",
        "col.experiment": "Expérimentation",
        "col.status": "Statut",
        "col.academies": "Territoires (académies)",
        "col.resource": "Ressource",
        "col.verdict": "Dernier résultat",
        "col.next": "Prochaine analyse",
        "col.classes": "Classes inscrites",
        "col.date": "Date prévue",
        "col.analysis": "Analyse",
        "col.version": "Version du rapport",
        "col.protocol": "Protocole (version, empreinte)",
        "col.report": "Rapport",
        "col.state": "État",
        "col.class": "Classe",
        "col.school": "École (UAI)",
        "col.arm": "Bras",
        "col.week": "Semaine du",
        "col.pupils": "Élèves actifs",
        "col.minutes": "Minutes actives",
        "portfolio_intro": "Toutes les expérimentations que vous pouvez consulter, avec leur dernier résultat. Les chiffres sont des agrégats : aucune donnée individuelle n'est accessible ici.",
        "no_experiment": "Aucune expérimentation à afficher.",
        "verdict.none": "pas encore d'analyse",
        "verdict.monitoring": "pas encore d'analyse d'effet (suivi des usages seulement)",
        "verdict.failed": "dernière analyse en échec",
        "no_next": "aucune",
        "analysis.monitoring": "suivi",
        "analysis.interim": "intermédiaire",
        "analysis.final": "finale",
        "run.done": "terminée",
        "run.failed": "en échec",
        "reports": "Rapports et historique",
        "reports_intro": "Chaque analyse produit un nouveau rapport ; un rapport publié n'est jamais modifié.",
        "no_run": "Aucune analyse n'a encore été exécutée.",
        "open_report": "Lire le rapport",
        "open_results": "Résultats (JSON)",
        "report_of": "rapport {analysis} n° {sequence} du {date}",
        "no_report": "pas de rapport",
        "summary": "En bref",
        "brief.from": "D'après le dernier rapport (analyse {analysis} du {date}).",
        "brief.question": "La question",
        "brief.answer": "La réponse",
        "brief.sure": "Quel degré de certitude ?",
        "brief.cost": "Coût",
        "brief.warnings": "Points d'attention",
        "protocol": "Protocole en vigueur",
        "version": "version",
        "classes_per_arm": "Classes inscrites par bras",
        "back_portfolio": "Retour au portefeuille",
        "usage_title": "Usages hebdomadaires de vos classes",
        "usage_intro": "Élèves actifs et minutes d'usage par semaine, pour les classes de votre académie seulement. Une case qui compterait moins de 10 élèves n'est pas affichée (« < 10 »).",
        "usage_of": "Usages hebdomadaires — {experiment}",
        "usage_none": "Aucun usage enregistré pour vos classes.",
        "usage_no_class": "Votre académie n'a inscrit aucune classe dans cette expérimentation.",
        "usage_list_intro": "Les expérimentations de votre académie :",
        "usage_total": "Toutes vos classes",
        "suppressed": "< 10",
        "suppressed_label": "moins de 10 élèves, non affiché",
        "open_usage": "Voir les usages",
        "forbidden": "Accès refusé",
        "forbidden_text": "Votre profil ne permet pas d'accéder à cette page.",
        "not_found": "Page introuvable",
        "not_found_text": "Cette page n'existe pas ou plus.",
        "bad_request": "Requête invalide",
        "bad_request_text": "Le formulaire envoyé n'a pas pu être lu ; revenez à la page et réessayez.",
        "caption_portfolio": "Expérimentations, statut et dernier résultat",
        "caption_runs": "Analyses exécutées, de la plus récente à la plus ancienne",
        "caption_usage": "Élèves actifs et minutes actives par semaine et par classe",
        "home": "Accueil",
        "footer": "Preuve — évaluer les ressources numériques éducatives par des expérimentations. Seuls des agrégats sont publiés ; une case de moins de 10 élèves est masquée.",
        "programmes": "Programmes",
        "programmes_intro": "Les expérimentations regroupées par programme de financement : ce qui marche, où, à quel coût.",
        "caption_programmes": "Programmes et nombre d'expérimentations",
        "programme": "Programme",
        "programme_intro": "Expérimentations du programme, par territoire, avec la synthèse des preuves des expérimentations closes (données agrégées uniquement).",
        "data_as_of": "Données de la dernière analyse finale :",
        "filters": "Filtres",
        "all": "Toutes",
        "apply_filters": "Filtrer",
        "shown": "{shown} expérimentation(s) affichée(s) sur {total}.",
        "caption_programme": "Expérimentations du programme : état, taille, effet, solidité, coût",
        "territories": "Territoires",
        "map_caption": "Carte en tuiles : une tuile par académie, le nombre d'expérimentations inscrit dans chaque tuile. Les mêmes chiffres sont dans le tableau suivant.",
        "caption_territories": "Expérimentations et élèves par académie",
        "syntheses": "Synthèses des preuves",
        "syntheses_intro": "Méta-analyse à effets aléatoires (REML, intervalle de Hartung-Knapp-Sidik-Jonkman) des effets principaux confirmatoires des expérimentations closes ; moins de 3 études : pas d'effet combiné.",
        "rests_on": "Repose sur {k} étude(s) et {pupils} élèves.",
        "excluded": "Non incluses (non closes ou sans effet final) :",
        "pooled": "Effet combiné : g = {g} [IC 95 % {low} ; {high}], soit {months} mois de progrès ; tau² = {tau2}, I² = {i2} % ; intervalle de prédiction [{pi_low} ; {pi_high}].",
        "side_by_side": "Pas d'effet combiné : moins de 3 études. Les études sont présentées côte à côte.",
        "no_study": "Aucune expérimentation close avec un effet final.",
        "caption_studies": "Études de la synthèse",
        "col.programme": "Programme",
        "col.experiments": "Expérimentations",
        "col.closed": "Closes",
        "col.academie": "Académie",
        "col.tags": "Type de ressource",
        "col.units": "Classes",
        "col.usage": "Usage (minutes actives par élève, part d'assidus)",
        "col.learners": "Élèves",
        "col.pupils_present": "Élèves des expérimentations présentes",
        "col.g": "g de Hedges",
        "col.months": "Mois de progrès",
        "col.rating": "Solidité",
        "col.cost": "Coût par élève",
        "col.study": "Étude",
        "col.ci": "IC 95 %",
    },
    "en": {
        "site": "Preuve — experiments portal",
        "skip": "Skip to content",
        "nav": "Main navigation",
        "portfolio": "Portfolio of experiments",
        "usage_nav": "Usage of my classes",
        "sign_in": "Sign in",
        "sign_out": "Sign out",
        "signed_in_as": "Signed in as",
        "switch_lang": "Français",
        "switch_lang_code": "fr",
        "token": "Access token",
        "token_help": "The token you were given (it starts with “pv_”). It is never displayed.",
        "sign_in_intro": "Sign in with your access token to read impact reports and the portfolio of experiments.",
        "bad_token": "This token is not recognised (unknown or revoked).",
        "throttled": "Too many refused sign-ins from your address: try again in a few minutes.",
        "bad_form": "The form expired; please try again.",
        "role.researcher": "researcher",
        "role.academie": "académie",
        "role.edtech": "EdTech company",
        "role.officer": "programme officer",
        "role.admin": "administration",
        "state.draft": "draft",
        "state.registered": "protocol registered",
        "state.enrolling": "enrolling",
        "state.running": "running",
        "state.analysing": "analysing",
        "state.closed": "closed",
        "col.experiment": "Experiment",
        "col.status": "Status",
        "col.academies": "Territories (académies)",
        "col.resource": "Resource",
        "col.verdict": "Latest result",
        "col.next": "Next analysis",
        "col.classes": "Classes enrolled",
        "col.date": "Due date",
        "col.analysis": "Analysis",
        "col.version": "Report version",
        "col.protocol": "Protocol (version, hash)",
        "col.report": "Report",
        "col.state": "State",
        "col.class": "Class",
        "col.school": "School (UAI)",
        "col.arm": "Arm",
        "col.week": "Week of",
        "col.pupils": "Active pupils",
        "col.minutes": "Active minutes",
        "portfolio_intro": "Every experiment you may read, with its latest result. Figures are aggregates: no individual data is reachable here.",
        "no_experiment": "No experiment to show.",
        "verdict.none": "no analysis yet",
        "verdict.monitoring": "no effect analysis yet (usage monitoring only)",
        "verdict.failed": "latest analysis failed",
        "no_next": "none",
        "analysis.monitoring": "monitoring",
        "analysis.interim": "interim",
        "analysis.final": "final",
        "run.done": "done",
        "run.failed": "failed",
        "reports": "Reports and history",
        "reports_intro": "Each analysis produces a new report; a published report is never changed.",
        "no_run": "No analysis has run yet.",
        "open_report": "Read the report",
        "open_results": "Results (JSON)",
        "report_of": "{analysis} report no. {sequence} of {date}",
        "no_report": "no report",
        "summary": "In short",
        "brief.from": "From the latest report ({analysis} analysis of {date}).",
        "brief.question": "The question",
        "brief.answer": "The answer",
        "brief.sure": "How sure are we?",
        "brief.cost": "Cost",
        "brief.warnings": "Points of attention",
        "protocol": "Protocol in force",
        "version": "version",
        "classes_per_arm": "Classes enrolled per arm",
        "back_portfolio": "Back to the portfolio",
        "usage_title": "Weekly usage of your classes",
        "usage_intro": "Active pupils and minutes of use per week, for your académie's classes only. A cell that would count fewer than 10 pupils is not shown (“< 10”).",
        "usage_of": "Weekly usage — {experiment}",
        "usage_none": "No usage recorded for your classes.",
        "usage_no_class": "Your académie has enrolled no class in this experiment.",
        "usage_list_intro": "Your académie's experiments:",
        "usage_total": "All your classes",
        "suppressed": "< 10",
        "suppressed_label": "fewer than 10 pupils, not shown",
        "open_usage": "See usage",
        "forbidden": "Access denied",
        "forbidden_text": "Your profile does not give access to this page.",
        "not_found": "Page not found",
        "not_found_text": "This page does not exist (any more).",
        "bad_request": "Bad request",
        "bad_request_text": "The form sent could not be read; go back to the page and try again.",
        "caption_portfolio": "Experiments, status and latest result",
        "caption_runs": "Analyses run, most recent first",
        "caption_usage": "Active pupils and active minutes per week and per class",
        "home": "Home",
        "footer": "Preuve — evaluating digital learning resources with randomised trials. Only aggregates are published; a cell of fewer than 10 pupils is hidden.",
    },
}


# --- issue 19: the three levels of use on « Usages de mes classes » (views.weekly_usage)
TEXT["fr"].update({
    "levels_title": "Trois niveaux d'usage de vos classes",
    "levels_caption": "Élèves à chaque niveau, par groupe (entonnoir GAR)",
    "levels_arm": "Groupe", "levels_enrolled": "Élèves inscrits",
    "levels_assigned": "Ressource affectée (GAR)", "levels_activated": "Licence activée",
    "levels_opened": "Ressource ouverte", "levels_active": "Usage actif (seuil du protocole)",
    "levels_control": "témoin",
    "levels_not_observed": "non transmis",
    "levels_nested": "Chaque niveau compte les élèves qui l'ont atteint ainsi que tous les "
                     "niveaux au-dessus (affectée ≥ activée ≥ ouverte ≥ usage actif), comme "
                     "dans les rapports d'impact. Le groupe témoin figure aussi : son "
                     "exposition à la ressource.",
    "levels_rule": "Règle du temps actif",
})
TEXT["en"].update({
    "levels_title": "Three levels of use of your classes",
    "levels_caption": "Pupils at each level, by group (GAR funnel)",
    "levels_arm": "Group", "levels_enrolled": "Pupils enrolled",
    "levels_assigned": "Resource assigned (GAR)", "levels_activated": "Licence activated",
    "levels_opened": "Resource opened", "levels_active": "Active use (protocol's threshold)",
    "levels_control": "control",
    "levels_not_observed": "not sent",
    "levels_nested": "Each level counts the pupils who reached it and every level above it "
                     "(assigned ≥ activated ≥ opened ≥ active use), as in the impact reports. "
                     "The control group is shown too: its exposure to the resource.",
    "levels_rule": "Active-time rule",
})


#: How académies are written (protocols name them by slug); others are capitalised.
_ACADEMIE_NAMES = {
    "besancon": "Besançon", "creteil": "Créteil", "la-reunion": "La Réunion",
    "orleans-tours": "Orléans-Tours",
}


def academie_name(slug: str) -> str:
    """An académie's name as people write it.

    Examples
    --------
    >>> academie_name("creteil"), academie_name("aix-marseille")
    ('Créteil', 'Aix-Marseille')
    """
    return _ACADEMIE_NAMES.get(slug) or "-".join(p.capitalize() for p in slug.split("-"))


def translate(language: Language, key: str, **values: object) -> str:
    """The text of ``key`` in ``language`` (French if missing), with ``values`` filled in.

    Examples
    --------
    >>> translate("en", "report_of", analysis="final", sequence=2, date="2028-06-30")
    'final report no. 2 of 2028-06-30'
    """
    text = TEXT[language].get(key) or TEXT["fr"].get(key, key)
    return text.format(**values) if values else text


def format_date(language: Language, moment: datetime | None, with_time: bool = False) -> str:
    """A date (Paris time) as the language writes it: ``15/01/2028`` or ``2028-01-15``."""
    if moment is None:
        return "—"
    local = moment.astimezone(SCHOOL_TIMEZONE)
    pattern = ("%d/%m/%Y" if language == "fr" else "%Y-%m-%d") + (" %H:%M" if with_time else "")
    return local.strftime(pattern)
