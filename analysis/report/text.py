"""Words of the impact report: one message catalogue per language, number formatting, and
the summary sentences.

French is the default (programme officers read French); English is on request. Every
visible string of the report comes from :data:`MESSAGES`, so a French report holds no
English words beyond data (resource and outcome names) and vice versa; the tests check it.
Strings of the results JSON that are in English (model descriptions, reasons) are never
shown as such: the report says them again from the catalogue.
"""

from __future__ import annotations

import math
from typing import Any, Final

__all__ = ["MESSAGES", "Text", "format_number"]


MESSAGES: Final[dict[str, dict[str, str]]] = {
    "fr": {
        "doc_title": "Rapport d'impact",
        "analysis_final": "analyse finale",
        "analysis_interim": "analyse intermédiaire",
        "analysis_monitoring": "suivi des usages",
        "analysis_monitoring_week": "suivi hebdomadaire",
        "analysis_monitoring_month": "suivi mensuel",
        "analysis_monitoring_period": "suivi de fin de période",
        "analysis_monitoring_cron": "suivi périodique",
        "analysis_interim_confirmatory": "analyse intermédiaire confirmatoire",
        "analysis_interim_descriptive": "analyse intermédiaire descriptive",
        "toc": "Sommaire",
        "s_summary": "Synthèse",
        "s_usage": "Usage de la ressource",
        "s_effect": "Effet sur les apprentissages",
        "s_credibility": "Crédibilité de l'étude",
        "s_methods": "Annexe méthodologique",
        "question": "La question",
        "question_text": "Les élèves qui utilisent {resource} progressent-ils davantage en "
                         "{outcome} que les élèves des {units} témoins ?",
        "answer": "La réponse",
        "how_sure": "Quel degré de certitude ?",
        "cost": "Coût",
        "warnings": "Points d'attention",
        "units_class": "classes", "units_school": "écoles", "units_learner": "élèves",
        "unit_class": "classe", "unit_school": "école", "unit_learner": "élève",
        "m_mixed_nested": " (et par école pour les classes d'une même école)",
        "sentence_up": "Les élèves des {units} ayant utilisé {resource} ont progressé de "
                       "{value} {points} de plus en {outcome} que ceux des {units} témoins",
        "sentence_down": "Les élèves des {units} ayant utilisé {resource} ont progressé de "
                         "{value} {points} de moins en {outcome} que ceux des {units} "
                         "témoins",
        "sentence_up_learner": "Les élèves ayant utilisé {resource} ont progressé de {value} "
                               "{points} de plus en {outcome} que les élèves témoins",
        "sentence_down_learner": "Les élèves ayant utilisé {resource} ont progressé de "
                                 "{value} {points} de moins en {outcome} que les élèves "
                                 "témoins",
        "point": "point", "points": "points",
        "months_more": ", soit environ {months} mois de progrès supplémentaires.",
        "months_one_more": ", soit environ 1 mois de progrès supplémentaire.",
        "months_less": ", soit environ {months} mois de progrès en moins.",
        "months_one_less": ", soit environ 1 mois de progrès en moins.",
        "months_zero": ", soit moins d'un mois de progrès.",
        "no_estimate": "L'effet n'a pas pu être estimé : {reason}",
        "interval": "Intervalle de confiance à {level} % : de {low} à {high} {points}.",
        "interval_zero": "Cet intervalle contient zéro : on ne peut pas exclure que "
                         "{resource} n'ait aucun effet sur {outcome}.",
        "interval_positive": "Cet intervalle est entièrement au-dessus de zéro : l'effet est "
                             "positif avec une confiance de {level} % (p ajustée {p}).",
        "interval_negative": "Cet intervalle est entièrement au-dessous de zéro : l'effet est "
                             "négatif avec une confiance de {level} % (p ajustée {p}).",
        "interval_unadjusted": " (intervalle non ajusté pour les comparaisons multiples).",
        "certainty_positive": "Selon le test prévu par le protocole ({rule}), l'effet est "
                              "positif : p ajustée {p}, au plus {threshold}.",
        "certainty_negative": "Selon le test prévu par le protocole ({rule}), l'effet est "
                              "négatif : p ajustée {p}, au plus {threshold}.",
        "certainty_not_established": "L'intervalle non ajusté exclut zéro, mais le test "
                                     "prévu par le protocole ({rule}) ne conclut pas : "
                                     "p ajustée {p}, au-dessus de {threshold}. L'effet "
                                     "n'est pas établi.",
        "certainty_descriptive": "Analyse intermédiaire descriptive : le protocole ne la "
                                 "déclare pas confirmatoire, aucune conclusion n'en est "
                                 "tirée.",
        "rule_correction": "{method} sur {n} comparaisons",
        "rule_sequential": "frontière d'O'Brien-Fleming, regard {look} sur {looks}",
        "rule_plain": "seuil α du protocole",
        "seq_design": "Plan séquentiel déclaré dans le protocole : {looks} regards "
                      "confirmatoires (analyse finale comprise) ; le risque α = {alpha} est "
                      "réparti entre eux par une fonction de dépense de Lan-DeMets de type "
                      "O'Brien-Fleming.",
        "seq_boundary": "Frontière (fraction d'information prévue, valeur critique |z|, "
                        "seuil de p nominal, α dépensé cumulé) : {items}.",
        "seq_look": "regard {k} : {t}, {z}, {p}, {spent}",
        "seq_this": "Cette analyse est le regard {look} sur {looks} : un effet n'y est "
                    "établi que si sa p ajustée est au plus le seuil nominal de ce regard.",
        "arm_label": "{resource} (groupe « {arm} »)",
        "arm_label_described": "{resource} (groupe « {arm} » : {description})",
        "rating_and_test_established": "La note mesure la solidité du dispositif ; "
                                       "l'existence de l'effet est établie par le test "
                                       "prévu par le protocole (p ajustée).",
        "rating_and_test_not_established": "La note mesure la solidité du dispositif ; "
                                           "le test prévu par le protocole (p ajustée) "
                                           "n'établit l'effet d'aucun groupe.",
        "rating": "Note de solidité Preuve, inspirée de l'EEF : {n} sur 5",
        "rating_help": "Note de 0 à 5 cadenas, inspirée de celle de l'Education Endowment "
                       "Foundation (EEF) sans en être une : elle baisse quand l'étude manque "
                       "de puissance, perd des élèves ou compare des groupes inégaux au "
                       "départ. Chaque règle est donnée avec sa source, ou signalée comme "
                       "règle propre à Preuve.",
        "src_eef": "source : EEF, Classifying the security of EEF findings (2019), "
                   "tableau 1",
        "src_wwc": "seuil : What Works Clearinghouse, Standards Handbook v4.1 ; nombre de "
                   "cadenas retirés : règle propre à Preuve",
        "src_preuve": "règle propre à Preuve",
        "r_combination": "Combinaison : la note part du plus bas des plafonds (comme l'EEF), "
                         "puis les retraits s'additionnent, sans descendre sous 0 (règle "
                         "propre à Preuve).",
        "rating_steps": "Comment la note est obtenue",
        "r_design_rct": "Essai randomisé : jusqu'à 5 cadenas.",
        "r_cap_power": "Effet minimal détectable au tirage au sort de {value} écart-type "
                       "(d'après le plan : unités tirées au sort, CCI et R² supposés, voir "
                       "l'annexe méthodologique) : au plus {n} cadenas.",
        "r_cap_power_none": "Effet minimal détectable inconnu : au plus {n} cadenas.",
        "r_cap_attrition": "Élèves perdus entre le tirage au sort et l'analyse, classes "
                           "perdues entières comprises : {value} % : au plus {n} cadenas.",
        "r_cap_attrition_none": "Élèves perdus inconnus : au plus {n} cadenas.",
        "r_minus_differential_attrition": "Attrition élevée selon la borne {boundary} du "
                                          "What Works Clearinghouse : −1 cadenas.",
        "boundary_cautious": "prudente", "boundary_optimistic": "optimiste",
        "r_minus_imbalance_large": "Groupes inégaux au départ (écart de plus de 0,25 "
                                   "écart-type ; non compté sur une caractéristique dont le "
                                   "modèle tient compte quand l'attrition est faible) : "
                                   "−2 cadenas.",
        "r_minus_imbalance_unadjusted": "Écart initial entre les groupes non pris en compte "
                                        "dans le modèle : −1 cadenas.",
        "r_minus_sample_ratio": "Répartition des {units} entre les groupes différente de "
                                "celle du protocole : −1 cadenas.",
        "r_minus_few_units": "Moins de 20 {units} analysées ({value}) : −1 cadenas.",
        "r_minus_developer_measure": "Critère principal mesuré par la ressource évaluée "
                                     "(mesure conçue par l'éditeur ; règle propre à Preuve) : "
                                     "−1 cadenas.",
        "r_no_estimate": "Pas d'estimation de l'effet principal : 0 cadenas.",
        "cost_per_pupil": "Coût par élève bénéficiaire : {value} € ({total} € pour {pupils} "
                          "élèves).",
        "cost_by_funder": "Financement :",
        "cost_per_month": "Coût par mois de progrès gagné par élève : {value} €.",
        "cost_arm": " (groupe « {arm} »)",
        "cost_per_pupil_arm": "Coût par élève bénéficiaire : {value} €.",
        "cost_per_active": "Coût par élève ayant réellement utilisé la ressource : {value} €.",
        "cost_no_effect": "Le rapport coût-efficacité n'est pas calculé : l'effet n'est pas "
                          "établi.",
        "no_cost": "Le protocole ne déclare pas de coûts : le coût par élève n'est pas "
                   "connu.",
        "decision_rule": "Règle de décision écrite avant les résultats :",
        "decision_criteria": "Critères chiffrés de la règle : {parts} : {verdict}.",
        "decision_effect": "effet positif établi par le test du protocole : {answer}",
        "decision_g": "taille d'effet d'au moins {threshold} : {answer} ({value})",
        "decision_share": "part d'élèves au-dessus du seuil d'usage d'au moins {threshold} : "
                          "{answer} ({value})",
        "decision_met": "critères remplis",
        "decision_not_met": "critères non remplis",
        "decision_not_evaluated": "Critères de la règle non évalués : cette analyse n'est pas "
                                  "confirmatoire.",
        # the closing report (issue 19)
        "closing_title": "Rapport de clôture",
        "closing_final": "Analyse finale du {moment}, protocole version {version}.",
        "closing_no_final": "Aucune analyse finale n'est enregistrée : la règle de décision "
                            "n'est pas évaluée.",
        "closing_no_rule": "Le protocole ne déclare pas de règle de décision.",
        "closing_rule_heading": "Règle de décision pré-enregistrée, évaluée",
        "closing_answer_heading": "Résultat de l'analyse finale",
        "closing_decision_heading": "Décision après l'expérimentation",
        "closing_decision": "Décision : {decision}.",
        "closing_reason": "Motif : {reason}",
        "closing_decided": "Enregistrée par {actor} le {moment}.",
        "closing_acknowledged": "Prise en compte par le chargé de programme ({actor}) le "
                                "{moment}.",
        "closing_not_acknowledged": "Pas encore prise en compte par le chargé de programme.",
        "closing_closed": "Expérimentation close le {moment}.",
        "decision_choice_generaliser": "généraliser",
        "decision_choice_ajuster": "ajuster",
        "decision_choice_arreter": "arrêter",
        "decision_choice_prolonger": "prolonger",
        "volunteers": "Les classes participantes sont volontaires : les résultats valent "
                      "pour des enseignants volontaires et peuvent ne pas se retrouver lors "
                      "d'une généralisation.",
        # usage
        "funnel": "Du déploiement à l'usage réel",
        "funnel_caption": "Entonnoir d'usage du groupe {arm}",
        "f_units_enrolled": "{units} inscrites dans le groupe",
        "f_units_activated": "{units} ayant activé la ressource",
        "f_learners_randomised": "élèves des {units} tirées au sort",
        "f_learners_on_record": "élèves suivis (un score ou une trace d'usage)",
        "funnel_base": "Chaque étape est incluse dans la précédente ; dénominateur du "
                       "groupe : {n} élèves des unités tirées au sort (effectif déclaré à "
                       "l'inscription, ou élèves suivis s'ils sont plus nombreux), base aussi "
                       "des parts hebdomadaires.",
        "f_learners_logged_in": "élèves s'étant connectés",
        "f_learners_active": "élèves avec un usage actif",
        "f_learners_compliant": "élèves analysés ayant atteint {minutes} minutes d'usage actif",
        "ci_range": "[{low} ; {high}]",
        "eq_adjusted": "ajustement nécessaire, fait dans le modèle",
        "f_step": "Étape", "f_count": "Effectif",
        "usage_table_caption": "Usage par groupe (élèves analysés)",
        "u_arm": "Groupe", "u_learners": "Élèves analysés",
        "u_with_usage": "Élèves avec usage actif", "u_mean": "Minutes actives (moyenne)",
        "u_median": "Minutes actives (médiane)", "u_weeks": "Semaines actives (moyenne)",
        "u_compliant": "Part au-dessus du seuil",
        "weekly": "Usage actif semaine par semaine",
        "weekly_alt": "Part des élèves de chaque groupe ayant eu un usage actif, par semaine.",
        "weekly_x": "Semaine", "weekly_y": "Part des élèves actifs (%)",
        "weekly_none": "L'usage semaine par semaine n'est pas disponible pour cette analyse.",
        "coverage": "Ce que les données ne voient pas",
        "cov_events": "L'usage est mesuré à partir des traces envoyées par la ressource : "
                      "un usage hors ligne, sur papier ou sur un autre outil n'est pas "
                      "observé.",
        "cov_login": "Une simple connexion n'est pas comptée comme un usage : seul le temps "
                     "d'activité réelle (exercices, activités) l'est.",
        "cov_no_login": "Les connexions sans activité ne figurent pas dans ces données : "
                        "l'écart entre « connecté » et « actif » n'est pas mesuré.",
        "cov_control": "L'usage d'autres ressources par les classes témoins n'est pas "
                       "observé.",
        "cov_suppressed": "Les cases de moins de 10 élèves sont masquées (« < 10 »).",
        "cov_watermark": "Données arrêtées au {at} ({events} événements enregistrés).",
        "cov_cutoff": "Données arrêtées au {at} : seuls les événements survenus et "
                      "enregistrés à cette date sont analysés ({events} événements), "
                      "quelle que soit la date à laquelle l'analyse a été calculée.",
        "cov_no_usage": "Aucune donnée d'usage n'a été fournie à cette analyse.",
        # effect
        "effect_caption": "Effets (intention de traiter)",
        "e_outcome": "Mesure", "e_group": "Population", "e_role": "Rôle",
        "e_estimate": "Effet (points)", "e_ci": "Intervalle de confiance",
        "e_p": "p", "e_p_adj": "p ajustée", "e_g": "Taille d'effet (g)",
        "e_months": "Mois de progrès", "e_learners": "Élèves",
        "all_pupils": "Tous les élèves",
        "role_primary": "principal", "role_secondary": "secondaire",
        "role_subgroup": "sous-groupe (exploratoire)", "role_cace": "élèves ayant utilisé",
        "forest": "Effets par mesure et sous-groupe",
        "forest_alt": "Graphique en forêt : taille d'effet (g de Hedges) et intervalle de "
                      "confiance de chaque mesure et sous-groupe ; la ligne verticale marque "
                      "l'absence d'effet.",
        "forest_x": "Taille d'effet (g de Hedges)",
        "correction": "Correction pour comparaisons multiples : {method}, appliquée à la "
                      "famille des mesures principales et à celle des mesures secondaires "
                      "et des tests d'interaction. Les effets par sous-groupe sont "
                      "descriptifs.",
        "correction_none": "Aucune correction pour comparaisons multiples (choix du "
                           "protocole).",
        "method_holm": "méthode de Holm", "method_bonferroni": "méthode de Bonferroni",
        "method_benjamini-hochberg": "méthode de Benjamini-Hochberg",
        "interaction": "Test d'interaction ({attribute}) : p = {p}, p ajustée = {p_adj}.",
        "cace_note": "La ligne « élèves ayant utilisé » estime l'effet chez les élèves qui "
                     "ont atteint le seuil d'usage (CACE) : elle complète l'effet principal "
                     "sans le remplacer.",
        "not_shown": "Non montré : {reason}",
        "reason_monitoring": "pas d'estimation de l'effet avant l'analyse intermédiaire ou "
                             "finale",
        "reason_suppressed": "moins de 10 élèves",
        "reason_other": "non estimable",
        "lt10": "< 10",
        # credibility
        "consort": "Flux des {units} et des élèves (CONSORT)",
        "consort_alt": "Diagramme de flux CONSORT : {units} et élèves de chaque groupe, du "
                       "tirage au sort à l'analyse.",
        "c_allocated": "{units} tirées au sort",
        "c_analysed_units": "{units} analysées",
        "c_on_record": "élèves inscrits",
        "c_baseline": "élèves avec score initial",
        "c_analysed": "élèves analysés",
        "consort_caption": "Flux CONSORT par groupe",
        "balance": "Équilibre des groupes au départ",
        "balance_caption": "Différences standardisées entre groupes avant l'intervention",
        "b_characteristic": "Caractéristique", "b_difference": "Différence standardisée",
        "b_verdict": "Verdict (WWC)",
        "eq_satisfied": "équivalence établie",
        "eq_adjustment required": "ajustement nécessaire",
        "eq_not satisfied": "équivalence non établie",
        "eq_none": "non calculé",
        "baseline_of": "{outcome} (score initial)",
        "attrition": "Élèves et {units} perdus (attrition)",
        "attrition_caption": "Attrition comparée aux bornes du What Works Clearinghouse",
        "a_level": "Niveau", "a_overall": "Globale", "a_differential": "Différentielle",
        "a_boundary": "Différentielle admise (borne du protocole)",
        "a_cautious": "Niveau (borne prudente)", "a_optimistic": "Niveau (borne du protocole)",
        "a_all_learners": "Tous les élèves tirés au sort",
        "a_unverified": "Borne optimiste lue à la ligne {row} % : lignes 13 à 65 de cette "
                        "colonne non vérifiées contre le Handbook du WWC.",
        "rating_low": "faible", "rating_high": "élevée",
        "srm": "Répartition des {units} entre les groupes : χ² = {chi2}, p = {p}.",
        "icc": "Corrélation intra-{unit} de {outcome} : {icc}.",
        "deviations": "Écarts au protocole et avenants",
        "protocol_version": "Version du protocole : {version} (SHA-256 {sha}).",
        "amendment": "Avenant v{version} du {at} : {reason}",
        "amendment_fields": " (champs modifiés : {fields})",
        "no_amendment": "Aucun avenant enregistré.",
        "no_deviation": "Aucun écart au protocole signalé.",
        "no_record": "Cette analyse a été produite hors du registre : version et avenants "
                     "non connus.",
        # methods
        "m_estimand": "Estimande : effet de l'attribution à la ressource (intention de "
                      "traiter), tous les élèves tirés au sort étant analysés dans leur "
                      "groupe d'origine.",
        "m_model_ancova": "Modèle : régression du score final sur le groupe, le score "
                          "initial, les covariables et les strates de randomisation ; "
                          "erreurs-types robustes à la corrélation au sein des {units}.",
        "m_model_ancova_no_pretest": "Modèle : sans pré-test, régression du score final sur "
                                     "le groupe, ajustée sur les covariables et les strates "
                                     "de randomisation déclarées (ou sur rien) ; "
                                     "erreurs-types robustes à la corrélation au sein des "
                                     "{units}.",
        "m_attrition": "Attrition : bornes du What Works Clearinghouse (Standards Handbook "
                       "v4.1, tableau II.1), borne {boundary} ; l'attrition globale est "
                       "arrondie au pour cent entier supérieur pour lire le tableau (choix "
                       "prudent, règle propre à Preuve), l'attrition différentielle est "
                       "comparée sans arrondi.",
        "m_mdes": "Puissance : effet minimal détectable au tirage au sort (PowerUp!, Dong & "
                  "Maynard 2013), calculé sur les unités tirées au sort avec les hypothèses "
                  "de CCI et de R² du protocole, et non sur l'erreur-type obtenue.",
        "m_mdes_estimated": "Puissance : le protocole n'a pas de section `power:` ; l'effet "
                            "minimal détectable au tirage au sort utilise la CCI estimée sur "
                            "les données et un R² nul.",
        "m_model_mixed": "Modèle : modèle mixte à effet aléatoire par {unit}{nested}, "
                         "estimé par maximum de vraisemblance restreinte (REML), ajusté sur "
                         "le score initial, les covariables et les strates ; intervalles de "
                         "Student à degrés de liberté de Satterthwaite (comme lmerTest).",
        # variance estimator of the OLS and 2SLS models (analysis/_ols.py), by option
        "m_variance_cr2": "Erreurs-types : estimateur CR2 robuste à la corrélation au sein "
                          "des {units} (Bell et McCaffrey, 2002, Survey Methodology 28(2)), "
                          "tests et intervalles de Student aux degrés de liberté de "
                          "Satterthwaite (Pustejovsky et Tipton, 2018, JBES 36(4)), calculés "
                          "comme les paquets R clubSandwich et estimatr ; strates en effets "
                          "fixes. Même estimateur pour l'effet chez les utilisateurs (CACE, "
                          "doubles moindres carrés).",
        "m_variance_cr2_learner": "Erreurs-types : estimateur HC2 robuste à "
                                  "l'hétéroscédasticité (CR2 avec un élève par grappe ; Bell "
                                  "et McCaffrey, 2002, Survey Methodology 28(2)), tests et "
                                  "intervalles de Student aux degrés de liberté de "
                                  "Satterthwaite (Pustejovsky et Tipton, 2018, JBES 36(4)).",
        "m_variance_cr1": "Erreurs-types : estimateur CR1 robuste à la corrélation au sein des "
                          "{units}, facteur G/(G−1)·(N−1)/(N−K), Student à G − 1 degrés de "
                          "liberté (option cluster_correction: cr1).",
        "m_variance_cr1_learner": "Erreurs-types : estimateur HC1 robuste à "
                                  "l'hétéroscédasticité, Student à N − K degrés de liberté.",
        "m_variance_cr1-strata": "Erreurs-types : estimateur CR1 avec le facteur G/(G−S) "
                                 "(S strates), Student à G − S degrés de liberté : règle "
                                 "propre à Preuve, non publiée, gardée pour reproduire "
                                 "d'anciens rapports.",
        "m_effect_size": "Taille d'effet : g de Hedges (écart-type groupé, correction des "
                         "petits échantillons) ; mois de progrès selon la table de conversion "
                         "du Teaching and Learning Toolkit de l'Education Endowment "
                         "Foundation (la table des rapports de projets de l'EEF, qui diffère "
                         "légèrement, n'a pas pu être consultée).",
        "m_missing": "Score initial manquant : méthode de l'indicatrice (valeur mise à 0 "
                     "et indicatrice dans le modèle).",
        "m_alpha": "Seuil : α = {alpha}, tests bilatéraux.",
        "m_strata": "Strates de randomisation : {strata}.",
        "m_covariates": "Covariables : {covariates}.",
        "m_protocol_hash": "Empreinte SHA-256 du protocole : {sha}.",
        "m_watermark": "Filigrane des données : {items}.",
        "m_no_watermark": "Filigrane des données : analyse sur fichiers, sans registre.",
        "m_software": "Logiciels : {items}.",
        "m_generated": "Rapport produit le {at}.",
        "m_periods": "Périodes du protocole, écrites en périodes scolaires (du premier jour "
                     "dans la première zone au dernier jour dans la dernière) : {periods}.",
        "period_baseline": "mesures initiales",
        "period_intervention": "intervention",
        "period_followup": "mesures finales",
        "s_waves": "Effets par vague",
        "waves_caption": "Effet sur le critère principal à chaque vague de mesure de la cohorte",
        "w_wave": "Vague",
        "w_primary": "principale (confirmatoire)",
        "w_secondary": "secondaire",
        "waves_note": "Chaque vague est analysée comme la vague principale, avec le même "
                      "pré-test ; les élèves gardent le groupe de la classe tirée au sort "
                      "(intention de traiter). Les p-valeurs des vagues secondaires sont "
                      "ajustées entre vagues, par groupe comparé.",
        "m_periode": "Analyse de fin de période {number} de l'année scolaire {year} "
                     "(dans la dernière zone de vacances de l'expérimentation à la finir).",
        "m_suppression": "Les cases de moins de 10 élèves sont masquées partout ; aucune "
                         "classe ni aucun enseignant n'est nommé ou classé.",
        "none": "aucune",
        "arm_control": "témoin",
        "contrast": "{arm} contre {control}",
        "yes": "oui", "no": "non",
        "footer": "Rapport produit par Preuve, logiciel libre d'évaluation des ressources "
                  "numériques éducatives.",
        "wm_stored_events": "événements enregistrés",
        "wm_cutoff": "données arrêtées au",
        "wm_latest_event_at": "dernier événement",
        "wm_other": "autre",
        "pdf_page": "page {n}",
    },
    "en": {
        "doc_title": "Impact report",
        "analysis_final": "final analysis",
        "analysis_interim": "interim analysis",
        "analysis_monitoring": "usage monitoring",
        "analysis_monitoring_week": "weekly monitoring",
        "analysis_monitoring_month": "monthly monitoring",
        "analysis_monitoring_period": "end-of-period monitoring",
        "analysis_monitoring_cron": "periodic monitoring",
        "analysis_interim_confirmatory": "confirmatory interim analysis",
        "analysis_interim_descriptive": "descriptive interim analysis",
        "toc": "Contents",
        "s_summary": "Summary",
        "s_usage": "Use of the resource",
        "s_effect": "Effect on learning",
        "s_credibility": "How credible the study is",
        "s_methods": "Methods appendix",
        "question": "The question",
        "question_text": "Do pupils who use {resource} make more progress in {outcome} than "
                         "pupils of the control {units}?",
        "answer": "The answer",
        "how_sure": "How sure are we?",
        "cost": "Cost",
        "warnings": "Points to watch",
        "units_class": "classes", "units_school": "schools", "units_learner": "pupils",
        "unit_class": "class", "unit_school": "school", "unit_learner": "pupil",
        "m_mixed_nested": " (and per school for classes of the same school)",
        "sentence_up": "Pupils in {units} that used {resource} progressed {value} {points} "
                       "more in {outcome} than those in control {units}",
        "sentence_down": "Pupils in {units} that used {resource} progressed {value} {points} "
                         "less in {outcome} than those in control {units}",
        "sentence_up_learner": "Pupils who used {resource} progressed {value} {points} more "
                               "in {outcome} than control pupils",
        "sentence_down_learner": "Pupils who used {resource} progressed {value} {points} "
                                 "less in {outcome} than control pupils",
        "point": "point", "points": "points",
        "months_more": ", about {months} months of additional progress.",
        "months_one_more": ", about 1 month of additional progress.",
        "months_less": ", about {months} months less progress.",
        "months_one_less": ", about 1 month less progress.",
        "months_zero": ", less than one month of progress.",
        "no_estimate": "The effect could not be estimated: {reason}",
        "interval": "{level}% confidence interval: from {low} to {high} {points}.",
        "interval_zero": "This interval contains zero: we cannot rule out that {resource} "
                         "has no effect on {outcome}.",
        "interval_positive": "This interval lies entirely above zero: the effect is positive "
                             "with {level}% confidence (adjusted p {p}).",
        "interval_negative": "This interval lies entirely below zero: the effect is negative "
                             "with {level}% confidence (adjusted p {p}).",
        "interval_unadjusted": " (interval not adjusted for multiple comparisons).",
        "certainty_positive": "By the test the protocol prescribes ({rule}), the effect is "
                              "positive: adjusted p {p}, at most {threshold}.",
        "certainty_negative": "By the test the protocol prescribes ({rule}), the effect is "
                              "negative: adjusted p {p}, at most {threshold}.",
        "certainty_not_established": "The unadjusted interval excludes zero, but the test "
                                     "the protocol prescribes ({rule}) does not conclude: "
                                     "adjusted p {p}, above {threshold}. The effect is not "
                                     "established.",
        "certainty_descriptive": "Descriptive interim analysis: the protocol does not declare "
                                 "it confirmatory, no conclusion is drawn from it.",
        "rule_correction": "{method} over {n} comparisons",
        "rule_sequential": "O'Brien-Fleming boundary, look {look} of {looks}",
        "rule_plain": "the protocol's α",
        "seq_design": "Sequential design declared in the protocol: {looks} confirmatory "
                      "looks (the final analysis included); the risk α = {alpha} is shared "
                      "between them by a Lan-DeMets spending function of O'Brien-Fleming "
                      "type.",
        "seq_boundary": "Boundary (planned information fraction, critical |z|, nominal p "
                        "threshold, cumulative α spent): {items}.",
        "seq_look": "look {k}: {t}, {z}, {p}, {spent}",
        "seq_this": "This analysis is look {look} of {looks}: an effect is established here "
                    "only if its adjusted p is at most this look's nominal threshold.",
        "arm_label": "{resource} (group \"{arm}\")",
        "arm_label_described": "{resource} (group \"{arm}\": {description})",
        "rating_and_test_established": "The rating measures the strength of the design; "
                                       "whether there is an effect is established by the "
                                       "test the protocol prescribes (adjusted p).",
        "rating_and_test_not_established": "The rating measures the strength of the design; "
                                           "the test the protocol prescribes (adjusted p) "
                                           "establishes no group's effect.",
        "rating": "Preuve security rating, inspired by the EEF's: {n} out of 5",
        "rating_help": "A rating from 0 to 5 padlocks, inspired by the Education Endowment "
                       "Foundation's (EEF) without being it: it goes down when the study "
                       "lacks power, loses pupils or compares groups that differed at the "
                       "start. Each rule is given with its source, or marked as Preuve's "
                       "own rule.",
        "src_eef": "source: EEF, Classifying the security of EEF findings (2019), table 1",
        "src_wwc": "threshold: What Works Clearinghouse, Standards Handbook v4.1; padlocks "
                   "removed: Preuve's own rule",
        "src_preuve": "Preuve's own rule",
        "r_combination": "Combination: the rating starts from the lowest cap (as the EEF "
                         "does), then the deductions add up, never below 0 (Preuve's own "
                         "rule).",
        "rating_steps": "How the rating is obtained",
        "r_design_rct": "Randomised trial: up to 5 padlocks.",
        "r_cap_power": "Minimum detectable effect at randomisation of {value} standard "
                       "deviations (from the design: units randomised, assumed ICC and R², see "
                       "the methods appendix): at most {n} padlocks.",
        "r_cap_power_none": "Minimum detectable effect unknown: at most {n} padlocks.",
        "r_cap_attrition": "Pupils lost between randomisation and analysis, classes lost "
                           "entirely included: {value}%: at most {n} padlocks.",
        "r_cap_attrition_none": "Pupils lost unknown: at most {n} padlocks.",
        "r_minus_differential_attrition": "High attrition against the What Works "
                                          "Clearinghouse {boundary} boundary: −1 padlock.",
        "boundary_cautious": "cautious", "boundary_optimistic": "optimistic",
        "r_minus_imbalance_large": "Groups unequal at the start (difference above 0.25 "
                                   "standard deviations; not counted on a characteristic "
                                   "the model adjusts for when attrition is low): "
                                   "−2 padlocks.",
        "r_minus_imbalance_unadjusted": "Initial difference between groups not adjusted for "
                                        "in the model: −1 padlock.",
        "r_minus_sample_ratio": "Allocation of {units} between groups differs from the "
                                "protocol: −1 padlock.",
        "r_minus_few_units": "Fewer than 20 {units} analysed ({value}): −1 padlock.",
        "r_minus_developer_measure": "Primary outcome measured by the evaluated resource "
                                     "(a measure designed by the developer; a rule of "
                                     "Preuve's own): −1 padlock.",
        "r_no_estimate": "No estimate of the primary effect: 0 padlocks.",
        "cost_per_pupil": "Cost per pupil reached: €{value} (€{total} for {pupils} pupils).",
        "cost_by_funder": "Funding:",
        "cost_per_month": "Cost per month of progress gained per pupil: €{value}.",
        "cost_arm": " (group \"{arm}\")",
        "cost_per_pupil_arm": "Cost per pupil reached: €{value}.",
        "cost_per_active": "Cost per pupil who actually used the resource: €{value}.",
        "cost_no_effect": "Cost-effectiveness is not computed: the effect is not established.",
        "no_cost": "The protocol declares no costs: the cost per pupil is unknown.",
        "decision_rule": "Decision rule written before the results:",
        "decision_criteria": "The rule's criteria in numbers: {parts}: {verdict}.",
        "decision_effect": "positive effect established by the protocol's test: {answer}",
        "decision_g": "effect size of at least {threshold}: {answer} ({value})",
        "decision_share": "share of pupils above the usage threshold of at least "
                          "{threshold}: {answer} ({value})",
        "decision_met": "criteria met",
        "decision_not_met": "criteria not met",
        "decision_not_evaluated": "The rule's criteria are not evaluated: this analysis is "
                                  "not confirmatory.",
        # the closing report (issue 19)
        "closing_title": "Closing report",
        "closing_final": "Final analysis of {moment}, protocol version {version}.",
        "closing_no_final": "No final analysis is recorded: the decision rule is not "
                            "evaluated.",
        "closing_no_rule": "The protocol declares no decision rule.",
        "closing_rule_heading": "Pre-registered decision rule, evaluated",
        "closing_answer_heading": "Result of the final analysis",
        "closing_decision_heading": "Decision after the experiment",
        "closing_decision": "Decision: {decision}.",
        "closing_reason": "Reason: {reason}",
        "closing_decided": "Recorded by {actor} on {moment}.",
        "closing_acknowledged": "Acknowledged by the programme officer ({actor}) on "
                                "{moment}.",
        "closing_not_acknowledged": "Not acknowledged by the programme officer yet.",
        "closing_closed": "Experiment closed on {moment}.",
        "decision_choice_generaliser": "scale up (généraliser)",
        "decision_choice_ajuster": "adjust (ajuster)",
        "decision_choice_arreter": "stop (arrêter)",
        "decision_choice_prolonger": "extend (prolonger)",
        "volunteers": "Participating classes are volunteers: the results hold for "
                      "volunteer teachers and may not be found again at scale.",
        "funnel": "From deployment to real use",
        "funnel_caption": "Usage funnel of the {arm} group",
        "f_units_enrolled": "{units} enrolled in the group",
        "f_units_activated": "{units} that activated the resource",
        "f_learners_randomised": "pupils of the randomised {units}",
        "f_learners_on_record": "pupils followed (a score or a usage trace)",
        "funnel_base": "Each step is included in the one before; the group's denominator: "
                       "{n} pupils of the randomised units (as declared at enrollment, or the "
                       "pupils followed when more), also the base of the weekly shares.",
        "f_learners_logged_in": "pupils who logged in",
        "f_learners_active": "pupils with active use",
        "f_learners_compliant": "analysed pupils who reached {minutes} minutes of active use",
        "ci_range": "[{low}, {high}]",
        "eq_adjusted": "adjustment required, made in the model",
        "f_step": "Step", "f_count": "Count",
        "usage_table_caption": "Use by group (analysed pupils)",
        "u_arm": "Group", "u_learners": "Pupils analysed",
        "u_with_usage": "Pupils with active use", "u_mean": "Active minutes (mean)",
        "u_median": "Active minutes (median)", "u_weeks": "Active weeks (mean)",
        "u_compliant": "Share above the threshold",
        "weekly": "Active use week by week",
        "weekly_alt": "Share of each group's pupils with active use, per week.",
        "weekly_x": "Week", "weekly_y": "Share of active pupils (%)",
        "weekly_none": "Week-by-week use is not available for this analysis.",
        "coverage": "What the data cannot see",
        "cov_events": "Use is measured from the traces the resource sends: offline use, on "
                      "paper or in another tool, is not observed.",
        "cov_login": "A mere login is not counted as use: only time of real activity "
                     "(exercises, activities) is.",
        "cov_no_login": "Logins without activity are not in these data: the gap between "
                        "\"logged in\" and \"active\" is not measured.",
        "cov_control": "Use of other resources by control classes is not observed.",
        "cov_suppressed": "Cells of fewer than 10 pupils are hidden (\"< 10\").",
        "cov_watermark": "Data as of {at} ({events} events stored).",
        "cov_cutoff": "Data as of {at}: only events that occurred and were stored by then "
                      "are analysed ({events} events), whenever the analysis was computed.",
        "cov_no_usage": "No usage data was given to this analysis.",
        "effect_caption": "Estimated effects (intention to treat)",
        "e_outcome": "Measure", "e_group": "Population", "e_role": "Role",
        "e_estimate": "Effect (points)", "e_ci": "Confidence interval",
        "e_p": "p", "e_p_adj": "adjusted p", "e_g": "Effect size (g)",
        "e_months": "Months of progress", "e_learners": "Pupils",
        "all_pupils": "All pupils",
        "role_primary": "primary", "role_secondary": "secondary",
        "role_subgroup": "subgroup (exploratory)", "role_cace": "pupils who used it",
        "forest": "Effects by measure and subgroup",
        "forest_alt": "Forest plot: effect size (Hedges' g) and confidence interval of each "
                      "measure and subgroup; the vertical line marks no effect.",
        "forest_x": "Effect size (Hedges' g)",
        "correction": "Correction for multiple comparisons: {method}, applied to the family "
                      "of primary measures and to that of secondary measures and interaction "
                      "tests. Subgroup effects are descriptive.",
        "correction_none": "No correction for multiple comparisons (the protocol's choice).",
        "method_holm": "Holm's method", "method_bonferroni": "Bonferroni's method",
        "method_benjamini-hochberg": "Benjamini-Hochberg's method",
        "interaction": "Interaction test ({attribute}): p = {p}, adjusted p = {p_adj}.",
        "cace_note": "The row \"pupils who used it\" estimates the effect among pupils who "
                     "reached the usage threshold (CACE): it complements the primary effect "
                     "and does not replace it.",
        "not_shown": "Not shown: {reason}",
        "reason_monitoring": "no effect estimate before the interim or final analysis",
        "reason_suppressed": "fewer than 10 pupils",
        "reason_other": "not estimable",
        "lt10": "< 10",
        "consort": "Flow of {units} and pupils (CONSORT)",
        "consort_alt": "CONSORT flow diagram: {units} and pupils of each group, from "
                       "randomisation to analysis.",
        "c_allocated": "{units} randomised",
        "c_analysed_units": "{units} analysed",
        "c_on_record": "pupils on record",
        "c_baseline": "pupils with a baseline score",
        "c_analysed": "pupils analysed",
        "consort_caption": "CONSORT flow by group",
        "balance": "Balance of the groups at the start",
        "balance_caption": "Standardised differences between groups before the intervention",
        "b_characteristic": "Characteristic", "b_difference": "Standardised difference",
        "b_verdict": "Verdict (WWC)",
        "eq_satisfied": "equivalence established",
        "eq_adjustment required": "adjustment required",
        "eq_not satisfied": "equivalence not established",
        "eq_none": "not computed",
        "baseline_of": "{outcome} (baseline score)",
        "attrition": "Pupils and {units} lost (attrition)",
        "attrition_caption": "Attrition against the What Works Clearinghouse boundaries",
        "a_level": "Level", "a_overall": "Overall", "a_differential": "Differential",
        "a_boundary": "Differential allowed (protocol's boundary)",
        "a_cautious": "Rating (cautious boundary)", "a_optimistic": "Rating (protocol's boundary)",
        "a_all_learners": "All randomised pupils",
        "a_unverified": "Optimistic boundary read on row {row}%: rows 13 to 65 of that column "
                        "are not verified against the WWC Handbook.",
        "rating_low": "low", "rating_high": "high",
        "srm": "Allocation of {units} between groups: χ² = {chi2}, p = {p}.",
        "icc": "Intra-{unit} correlation of {outcome}: {icc}.",
        "deviations": "Deviations from the protocol and amendments",
        "protocol_version": "Protocol version: {version} (SHA-256 {sha}).",
        "amendment": "Amendment v{version} of {at}: {reason}",
        "amendment_fields": " (fields changed: {fields})",
        "no_amendment": "No amendment registered.",
        "no_deviation": "No deviation from the protocol reported.",
        "no_record": "This analysis was produced outside the registry: version and "
                     "amendments unknown.",
        "m_estimand": "Estimand: effect of being assigned to the resource (intention to "
                      "treat), every randomised pupil analysed in their original group.",
        "m_model_ancova_no_pretest": "Model: without a pre-test, regression of the final "
                                     "score on the group, adjusted for the declared "
                                     "covariates and randomisation strata (or nothing); "
                                     "standard errors robust to correlation within {units}.",
        "m_attrition": "Attrition: What Works Clearinghouse boundaries (Standards Handbook "
                       "v4.1, Table II.1), {boundary} boundary; overall attrition is rounded "
                       "up to the next whole percent to read the table (the conservative "
                       "choice, Preuve's own rule), differential attrition is compared "
                       "unrounded.",
        "m_mdes": "Power: minimum detectable effect at randomisation (PowerUp!, Dong & "
                  "Maynard 2013), from the units randomised and the protocol's ICC and R² "
                  "assumptions, not from the standard error obtained.",
        "m_mdes_estimated": "Power: the protocol has no `power:` section; the minimum "
                            "detectable effect at randomisation uses the ICC estimated on "
                            "the data and an R² of 0.",
        "m_model_ancova": "Model: regression of the final score on the group, the baseline "
                          "score, the covariates and the randomisation strata; standard "
                          "errors robust to correlation within {units}.",
        "m_model_mixed": "Model: mixed model with a random intercept per {unit}{nested}, "
                         "fitted by restricted maximum likelihood (REML), adjusted for the "
                         "baseline score, the covariates and the strata; t intervals on "
                         "Satterthwaite degrees of freedom (as lmerTest).",
        "m_variance_cr2": "Standard errors: CR2 estimator robust to correlation within {units} "
                          "(Bell & McCaffrey, 2002, Survey Methodology 28(2)), Student t "
                          "tests and intervals on Satterthwaite degrees of freedom "
                          "(Pustejovsky & Tipton, 2018, JBES 36(4)), computed as R's "
                          "clubSandwich and estimatr packages do; strata as fixed effects. "
                          "The same estimator for the effect on users (CACE, two-stage least "
                          "squares).",
        "m_variance_cr2_learner": "Standard errors: HC2 estimator robust to "
                                  "heteroskedasticity (CR2 with one pupil per cluster; Bell & "
                                  "McCaffrey, 2002, Survey Methodology 28(2)), Student t "
                                  "tests and intervals on Satterthwaite degrees of freedom "
                                  "(Pustejovsky & Tipton, 2018, JBES 36(4)).",
        "m_variance_cr1": "Standard errors: CR1 estimator robust to correlation within "
                          "{units}, factor G/(G−1)·(N−1)/(N−K), Student t on G − 1 degrees "
                          "of freedom (option cluster_correction: cr1).",
        "m_variance_cr1_learner": "Standard errors: HC1 estimator robust to "
                                  "heteroskedasticity, Student t on N − K degrees of freedom.",
        "m_variance_cr1-strata": "Standard errors: CR1 estimator with the factor G/(G−S) (S "
                                 "strata), Student t on G − S degrees of freedom: a rule of "
                                 "Preuve's own, not published, kept to reproduce earlier "
                                 "reports.",
        "m_effect_size": "Effect size: Hedges' g (pooled standard deviation, small-sample "
                         "correction); months of progress from the conversion table of the "
                         "Education Endowment Foundation's Teaching and Learning Toolkit (the "
                         "EEF project reports' table, which differs slightly, could not be "
                         "consulted).",
        "m_missing": "Missing baseline score: dummy-variable method (value set to 0 and an "
                     "indicator in the model).",
        "m_alpha": "Threshold: α = {alpha}, two-sided tests.",
        "m_strata": "Randomisation strata: {strata}.",
        "m_covariates": "Covariates: {covariates}.",
        "m_protocol_hash": "SHA-256 fingerprint of the protocol: {sha}.",
        "m_watermark": "Data watermark: {items}.",
        "m_no_watermark": "Data watermark: analysis on files, without the registry.",
        "m_software": "Software: {items}.",
        "m_generated": "Report produced on {at}.",
        "m_periods": "The protocol's periods, written in school périodes (from the first day "
                     "in the first zone to the last day in the last one): {periods}.",
        "period_baseline": "baseline measures",
        "period_intervention": "intervention",
        "period_followup": "endline measures",
        "s_waves": "Effects by wave",
        "waves_caption": "Effect on the primary outcome at each measurement wave of the cohort",
        "w_wave": "Wave",
        "w_primary": "primary (confirmatory)",
        "w_secondary": "secondary",
        "waves_note": "Each wave is analysed as the primary one, with the same pre-test; pupils "
                      "keep the group of the class randomised (intention to treat). The "
                      "p-values of secondary waves are adjusted across waves, per contrast.",
        "m_periode": "Analysis at the end of période {number} of the school year {year} "
                     "(in the last of the experiment's holiday zones to finish it).",
        "m_suppression": "Cells of fewer than 10 pupils are hidden everywhere; no class or "
                         "teacher is named or ranked.",
        "none": "none",
        "arm_control": "control",
        "contrast": "{arm} versus {control}",
        "yes": "yes", "no": "no",
        "footer": "Report produced by Preuve, open-source software for evaluating digital "
                  "learning resources.",
        "wm_stored_events": "stored events",
        "wm_cutoff": "data as of",
        "wm_latest_event_at": "latest event",
        "wm_other": "other",
        "pdf_page": "page {n}",
    },
}

# Attribute names of subgroups in words (DOMAIN.md: priority education, rural).
ATTRIBUTES: Final[dict[str, dict[str, str]]] = {
    "fr": {"education_priority": "Éducation prioritaire", "rural": "Rural",
           "sector": "Secteur", "academie": "Académie", "level": "Niveau"},
    "en": {"education_priority": "Priority education", "rural": "Rural",
           "sector": "Sector", "academie": "Académie", "level": "Level"},
}

# Values of attributes in words, where the stored value is a code (« hors_ep »); the
# report of a file written before 2026-12 may still carry « none » for it.
ATTRIBUTE_VALUES: Final[dict[str, dict[tuple[str, str], str]]] = {
    "fr": {("education_priority", "hors_ep"): "hors éducation prioritaire",
           ("education_priority", "none"): "hors éducation prioritaire"},
    "en": {("education_priority", "hors_ep"): "outside priority education",
           ("education_priority", "none"): "outside priority education"},
}


_MONTHS: Final[dict[str, tuple[str, ...]]] = {
    "fr": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
           "septembre", "octobre", "novembre", "décembre"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"),
}


def format_number(value: Any, lang: str = "fr", digits: int = 2, *, signed: bool = False
                  ) -> str:
    """A number in the reader's convention; ``—`` when missing.

    French: decimal comma, narrow no-break space between thousands, true minus sign.

    Examples
    --------
    >>> format_number(1234.5, "fr", 1), format_number(-0.25, "fr"), format_number(3, "en")
    ('1\\u202f234,5', '−0,25', '3')
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        text = f"{value:,}"
    else:
        text = f"{value:,.{digits}f}"
        if float(text.replace(",", "")) == 0:  # no "−0,0"
            text = text.lstrip("-")
    if signed and not text.startswith("-") and float(text.replace(",", "")) > 0:
        text = "+" + text
    if lang == "fr":
        text = text.replace(",", "\u202f").replace(".", ",")
    return text.replace("-", "\u2212")


class Text:
    """The catalogue of one language, with its number formatting.

    Examples
    --------
    >>> Text("fr")("units_class")
    'classes'
    """

    def __init__(self, lang: str) -> None:
        if lang not in MESSAGES:
            raise ValueError(f"lang: expecting one of {list(MESSAGES)}. Got {lang!r}")
        self.lang = lang
        self.messages = MESSAGES[lang]

    def __call__(self, key: str, **values: Any) -> str:
        """The message ``key`` with ``values`` filled in."""
        return self.messages[key].format(**values)

    def number(self, value: Any, digits: int = 2, *, signed: bool = False) -> str:
        """:func:`format_number` in this language."""
        return format_number(value, self.lang, digits, signed=signed)

    def p_value(self, value: Any) -> str:
        """A p-value: 3 decimals, ``< 0,001`` below."""
        if value is None:
            return "—"
        return "< " + self.number(0.001, 3) if value < 0.001 else self.number(value, 3)

    def percent(self, value: Any, digits: int = 0) -> str:
        """A proportion as a percentage (French puts a space before %)."""
        if value is None:
            return "—"
        sep = "\u202f" if self.lang == "fr" else ""
        return f"{self.number(100 * value, digits)}{sep}%"

    def moment(self, value: str) -> str:
        """An ISO 8601 time (a run's cut-off) as the reader says it, in Paris time:
        « 15 janvier 2028 à 06:00 (heure de Paris) »; the text itself when it is not one.

        Examples
        --------
        >>> Text("fr").moment("2028-01-15T05:00:00+00:00")
        '15 janvier 2028 à 06:00 (heure de Paris)'
        >>> Text("en").moment("2028-01-15T05:00:00+00:00")
        '15 January 2028 at 06:00 (Paris time)'
        """
        from datetime import datetime
        from zoneinfo import ZoneInfo

        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
        if moment.tzinfo is not None:
            moment = moment.astimezone(ZoneInfo("Europe/Paris"))
        month = _MONTHS[self.lang][moment.month - 1]
        if self.lang == "fr":
            return f"{moment.day} {month} {moment.year} à {moment:%H:%M} (heure de Paris)"
        return f"{moment.day} {month} {moment.year} at {moment:%H:%M} (Paris time)"

    def attribute(self, name: str) -> str:
        """A unit attribute in words (its name when unknown)."""
        return ATTRIBUTES[self.lang].get(name, name)

    def attribute_value(self, name: str, value: str) -> str:
        """A value of a unit attribute in words (the value itself when it is a word).

        Examples
        --------
        >>> Text("fr").attribute_value("education_priority", "hors_ep")
        'hors éducation prioritaire'
        """
        return ATTRIBUTE_VALUES[self.lang].get((name, value), value)


# --- issue 19: the three levels of use and the GAR funnel (analysis/report/usage_levels.py)
MESSAGES["fr"].update({
    "lv_title": "Trois niveaux d'usage : mise à disposition, utilisation, usage",
    "lv_caption": "Élèves à chaque niveau, par groupe (entonnoir GAR)",
    "lv_arm": "Groupe", "lv_enrolled": "Élèves inscrits",
    "lv_assigned": "Ressource affectée (GAR)", "lv_activated": "Licence activée",
    "lv_opened": "Ressource ouverte", "lv_active": "Usage actif d'au moins {minutes} min",
    "lv_active_any": "Usage actif",
    "lv_control": "{arm} (témoin)",
    "lv_not_observed": "non transmis",
    "lv_nested": "Chaque niveau compte les élèves qui l'ont atteint ainsi que tous les "
                 "niveaux au-dessus : affectée ≥ activée ≥ ouverte ≥ usage actif, dans "
                 "chaque groupe. Le nombre d'élèves inscrits est donné pour l'échelle.",
    "lv_levels": "Mise à disposition : la ressource affectée à l'élève dans le GAR "
                 "(resource_assigned), sa licence activée (licence_activated). "
                 "Utilisation : l'élève a ouvert la ressource (ouverture de session ou "
                 "activité). Usage : un temps actif sur la période d'intervention d'au "
                 "moins le seuil d'observance du protocole (sans seuil : au moins une "
                 "minute active).",
    "lv_unobserved": "Niveaux absents des données (la ressource ne les transmet pas, ou "
                     "les fichiers de l'analyse ne les contiennent pas), donc non comptés "
                     "dans l'emboîtement : {levels}.",
    "lv_control_note": "Le groupe témoin figure aussi : son exposition à la ressource "
                       "(affectations, ouvertures, usage) mesure la contamination.",
    "lv_none": "Les niveaux de mise à disposition et d'utilisation ne sont pas "
               "disponibles pour cette analyse (fichiers hors ligne sans niveaux).",
    "lv_rule": "Règle du temps actif : {rule}",
})
MESSAGES["en"].update({
    "lv_title": "Three levels of use: availability, utilisation, usage",
    "lv_caption": "Pupils at each level, by group (GAR funnel)",
    "lv_arm": "Group", "lv_enrolled": "Pupils enrolled",
    "lv_assigned": "Resource assigned (GAR)", "lv_activated": "Licence activated",
    "lv_opened": "Resource opened", "lv_active": "Active use of at least {minutes} min",
    "lv_active_any": "Active use",
    "lv_control": "{arm} (control)",
    "lv_not_observed": "not sent",
    "lv_nested": "Each level counts the pupils who reached it and every level above it: "
                 "assigned ≥ activated ≥ opened ≥ active use, in every group. Pupils "
                 "enrolled are given for scale.",
    "lv_levels": "Availability: the resource assigned to the pupil in the GAR "
                 "(resource_assigned), their licence activated (licence_activated). "
                 "Utilisation: the pupil opened the resource (a session or an activity). "
                 "Usage: active time over the intervention period of at least the "
                 "protocol's compliance threshold (without one: at least one active "
                 "minute).",
    "lv_unobserved": "Levels absent from the data (the resource does not send them, or "
                     "the analysis files do not hold them), hence left out of the nesting: "
                     "{levels}.",
    "lv_control_note": "The control group is shown too: its exposure to the resource "
                       "(assignments, openings, use) measures contamination.",
    "lv_none": "The availability and utilisation levels are not available for this "
               "analysis (offline files without levels).",
    "lv_rule": "Active-time rule: {rule}",
})
# --- « Questionnaires » (issue 19 item 4): appended so that sections added in parallel
# do not touch the same lines.
MESSAGES["fr"].update({
    "s_questionnaires": "Questionnaires",
    "q_intro": "Scores moyens des échelles des questionnaires déclarés dans le protocole "
               "(moyenne des items, items inversés recodés), leur fidélité (alpha de "
               "Cronbach, sur les répondants ayant répondu à tous les items) et la moyenne "
               "par bras, avec le nombre de répondants entre parenthèses.",
    "q_caption_pupil": "Questionnaires élèves : échelles par vague et par bras",
    "q_caption_teacher": "Conditions de déploiement (questionnaires enseignants) par bras",
    "q_scale": "Échelle", "q_wave": "Vague", "q_items": "Items", "q_respondents": "Répondants",
    "q_alpha": "Alpha de Cronbach",
    "q_wave_baseline": "début (avant l'intervention)", "q_wave_endline": "fin",
    "q_mean_n": "{mean} ({n})",
    "q_note": "Moins de 10 répondants : effectif, moyenne et alpha non affichés.",
})
MESSAGES["en"].update({
    "s_questionnaires": "Questionnaires",
    "q_intro": "Mean scores of the scales of the questionnaires the protocol declares (mean "
               "of the items, reverse items recoded), their reliability (Cronbach's alpha, "
               "over the respondents who answered every item) and the mean per arm, with "
               "the number of respondents in brackets.",
    "q_caption_pupil": "Pupils' questionnaires: scales by wave and arm",
    "q_caption_teacher": "Deployment conditions (teachers' questionnaires) by arm",
    "q_scale": "Scale", "q_wave": "Wave", "q_items": "Items", "q_respondents": "Respondents",
    "q_alpha": "Cronbach's alpha",
    "q_wave_baseline": "start (before the intervention)", "q_wave_endline": "end",
    "q_mean_n": "{mean} ({n})",
    "q_note": "Fewer than 10 respondents: count, mean and alpha not shown.",
})
